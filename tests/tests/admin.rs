//! `squall admin create-users`: bulk accounts for load tests.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{Client, Server};

#[test]
fn bulk_users_work_with_their_keys_and_are_kept_on_a_second_run() {
    let server = Server::start().unwrap();
    let made = server.admin(&["create-users", "--count", "5", "--prefix", "bulk-"]).unwrap();
    let made = made.as_array().unwrap();
    assert_eq!(made.len(), 5);
    assert_eq!(made[4]["email"], "bulk-4@loadtest.example");
    let c = Client::new(&server.url, made[0]["email"].as_str().unwrap(), made[0]["api_key"].as_str().unwrap());
    let (status, me) = c.get("/api/v1/users/me", &[]).unwrap();
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], made[0]["user_id"]);
    assert_eq!(me["role"], 400, "members");
    // Like POST /users, they join the default streams.
    let (_, subs) = c.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    assert_eq!(subs["subscriptions"][0]["name"], "general");

    // Again with more: the first five keep their keys.
    let state = std::env::temp_dir().join(format!("lt-state-{}.json", rand::random::<u64>()));
    let out = server
        .admin(&["create-users", "--count", "7", "--prefix", "bulk-", "--site", "http://s", "--loadtest-state"])
        .map(|_| ())
        .unwrap_err();
    assert!(out.to_string().contains("failed"), "--loadtest-state needs a value");
    let out = server
        .admin(&[
            "create-users",
            "--count",
            "7",
            "--prefix",
            "bulk-",
            "--site",
            "http://s",
            "--loadtest-state",
            state.to_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(out["users"], 7);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let site = saved["sites"]["http://s"].as_object().unwrap();
    assert_eq!(site.len(), 7);
    assert_eq!(site["bulk-0@loadtest.example"]["api_key"], made[0]["api_key"]);
    let _ = std::fs::remove_file(state);
}
