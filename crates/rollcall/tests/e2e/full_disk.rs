//! A full disk: the registry's store cannot write (the process may not grow
//! a file past a limit, `ulimit -f`, with SIGXFSZ ignored — what a full disk
//! looks like to SQLite). A change the store refuses is a 503 that says
//! "nothing was changed" — and then nothing has: the live catalog is as it
//! was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;

#[tokio::test]
async fn a_deregistration_the_store_cannot_write_leaves_the_catalog_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "trap '' XFSZ; ulimit -f 200 && exec '{}' registry --addr 127.0.0.1:0 --data-dir '{}'",
        rollcall_bin().display(),
        dir.path().display()
    );
    let reg = ChildProcess::start(std::path::Path::new("/bin/sh"), &["-c", &command], &[]).await;
    // Fill the store until it refuses.
    let fakes: Vec<FakeService> = {
        let mut fakes = Vec::new();
        let mut refused = false;
        for i in 0..5000 {
            let fake = FakeService::start().await;
            let mut body = fake.registration(&format!("Filler{i}"), &[]);
            body["RequiredServices"] = serde_json::json!(["X".repeat(100), "Y".repeat(100)]);
            let status = register_raw(&reg.url, &body).await.status();
            if status == 503 {
                refused = true;
                break;
            }
            assert_eq!(status, 200);
            fakes.push(fake);
        }
        assert!(refused, "the store never filled up");
        fakes
    };
    let victim = &fakes[0];
    let before = catalog(&reg.url).await.len();
    let answer = deregister_raw(&reg.url, &victim.url).await;
    assert_eq!(answer.status(), 503);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed")
    );
    assert!(
        instance(&reg.url, &victim.url).await.is_some(),
        "the instance is still in the live catalog"
    );
    assert_eq!(catalog(&reg.url).await.len(), before);

    // A known instance registering again, changed, is refused the same way
    // and stays as it was: live, and stored (a restart finds it).
    let mut changed = victim.registration("Filler0", &[]);
    changed["RequiredServices"] = serde_json::json!(["Z".repeat(100), "W".repeat(100)]);
    let answer = register_raw(&reg.url, &changed).await;
    assert_eq!(answer.status(), 503);
    let live = instance(&reg.url, &victim.url)
        .await
        .expect("the instance is still in the live catalog");
    assert_eq!(live["RequiredServices"][0], "X".repeat(100), "{live}");
    assert_eq!(catalog(&reg.url).await.len(), before);
    drop(reg);
    let again = registry_on_disk(dir.path(), "127.0.0.1:0", &[]).await;
    let stored = instance(&again.url, &victim.url)
        .await
        .expect("the instance is still stored");
    assert_eq!(stored["RequiredServices"][0], "X".repeat(100), "{stored}");
}
