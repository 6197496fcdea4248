//! How the backend's failures become Zulip errors.
//!
//! Handlers return [`ApiError`]s; a database or pool error converts into a
//! 500 that keeps the error as its cause (see `squall_proto::error`). At
//! dispatch, [`classify`] looks at that cause once: what the client could
//! have caused (a constraint its input violated, text PostgreSQL cannot
//! store) becomes a 400, a database that is away or overloaded a 503, and
//! only the rest stays a 500.

use squall_proto::error::ApiError;

/// Refines a 500 by its cause; other errors pass through unchanged.
pub fn classify(e: ApiError) -> ApiError {
    if e.status != 500 {
        return e;
    }
    let Some(cause) = e.cause.clone() else { return e };
    let refined = if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
        from_postgres(pg)
    } else if let Some(pool) = cause.downcast_ref::<deadpool_postgres::PoolError>() {
        from_pool(pool)
    } else {
        None
    };
    match refined {
        Some(mut r) => {
            if !r.is_server_error() {
                // Usually a race between requests, possibly our bug: worth
                // a line in the log even though the client is answered 4xx.
                tracing::warn!(status = r.status, cause = %squall_proto::error::chain(&*cause), "database refused a request");
            }
            r.cause = Some(cause);
            r
        }
        None => e,
    }
}

fn unavailable() -> ApiError {
    ApiError::busy("The database is unavailable; try again")
}

fn from_pool(e: &deadpool_postgres::PoolError) -> Option<ApiError> {
    match e {
        deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Backend(_) => Some(unavailable()),
        _ => None,
    }
}

fn from_postgres(e: &tokio_postgres::Error) -> Option<ApiError> {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: a closed connection or an I/O error
        // means the database is away. Anything else (a row count or type
        // mismatch) is our bug and stays a 500.
        let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        return (e.is_closed() || io).then(unavailable);
    };
    let code = db.code().code();
    Some(match code {
        // unique_violation: the request raced another one creating the same thing.
        "23505" => ApiError::bad_request("This conflicts with existing data; reload and try again"),
        // foreign_key_violation: something the request names is gone.
        "23503" => ApiError::bad_request("Something this request refers to does not exist"),
        // check_violation / not_null_violation
        "23514" | "23502" => ApiError::bad_request("Invalid value in request"),
        // character_not_in_repertoire (NUL in text), invalid byte sequence
        "22021" | "22P05" => ApiError::bad_request("Invalid characters in request"),
        // string_data_right_truncation, numeric_value_out_of_range
        "22001" => ApiError::bad_request("A value in the request is too long"),
        "22003" => ApiError::bad_request("A number in the request is out of range"),
        // datetime_field_overflow: a date computed from the request.
        "22008" => ApiError::bad_request("A date in the request is out of range"),
        // serialization_failure, deadlock_detected, too_many_connections,
        // admin/crash shutdown, cannot_connect_now: retry later.
        "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" => unavailable(),
        c if c.starts_with("08") => unavailable(),
        _ => return None,
    })
}
