//! The binary on a PostgreSQL queue: opening (an empty database, someone
//! else's, several processes at once), the password kept out of every
//! output, and a download end to end. Each test takes a database of its own
//! on the server `MINIMAX_DL_TEST_PG_URL` names (skipped without it, a
//! failure under CI).

use std::process::Output;
use std::time::Duration;

use crate::support::{self, PgTestDb, World, assert_exit, assert_success, stderr, stdout};

/// A world whose `--db` is the test database's URL.
async fn pg_world() -> Option<(PgTestDb, World)> {
    let db = PgTestDb::create().await?;
    let world = World::new().on_database(&db.url);
    Some((db, world))
}

#[track_caller]
fn assert_no_password(db: &PgTestDb, out: &Output) {
    let password = db.password();
    for (name, text) in [("stdout", stdout(out)), ("stderr", stderr(out))] {
        assert!(
            !text.contains(&password),
            "the password is in {name}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_opening_an_empty_database_at_once_all_succeed() {
    let Some((db, world)) = pg_world().await else {
        return;
    };
    let writers = (1..=4).map(|id| {
        let world = &world;
        async move { world.run(&["enqueue", &id.to_string()]).await }
    });
    for out in futures_util::future::join_all(writers).await {
        assert_success(&out);
        assert_no_password(&db, &out);
    }
    assert_eq!(world.status().await["queued"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn reading_verbs_on_an_empty_database_create_nothing() {
    let Some((db, world)) = pg_world().await else {
        return;
    };
    let shown = db.url.replace(&db.password(), "***");
    for args in [&["status"][..], &["list"], &["show", "1"]] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        assert_no_password(&db, &out);
        assert!(
            stderr(&out).contains(&format!("no queue at {shown}: run `minimax-dl enqueue`")),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(db.tables().await, [], "{args:?} created tables");
    }
    assert_success(&world.run(&["enqueue", "1"]).await);
    assert_eq!(world.status().await["queued"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_applications_database_is_refused_and_left_unchanged() {
    let Some((db, world)) = pg_world().await else {
        return;
    };
    db.make_foreign().await;
    let before = db.tables().await;
    for args in [
        &["status"][..],
        &["list"],
        &["show", "1"],
        &["enqueue", "1"],
        &["retry", "--all-failed"],
        &["cancel", "1"],
    ] {
        let out = world.run(args).await;
        assert_exit(&out, 2);
        assert_no_password(&db, &out);
        assert!(
            stderr(&out).contains("is not a minimax-dl queue"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(db.tables().await, before, "{args:?} changed the database");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_shows_nowhere_even_in_errors_and_trace_logs() {
    let Some((db, world)) = pg_world().await else {
        return;
    };
    let world = world.env("MINIMAX_DL_LOG", "trace");
    assert_success(&world.run(&["enqueue", "1"]).await);
    for args in [&["status"][..], &["list"], &["show", "1"], &["--help"]] {
        let out = world.run(args).await;
        assert_success(&out);
        assert_no_password(&db, &out);
    }
    // A wrong password: refused, and the message names the URL without it.
    let bad = db.url.replace(&db.password(), "not-the-password-0451");
    let wrong = World::new()
        .env("MINIMAX_DL_LOG", "trace")
        .on_database(&bad);
    let out = wrong.run(&["status"]).await;
    assert_exit(&out, 2);
    assert!(!stderr(&out).contains("0451"), "{}", stderr(&out));
    assert!(stderr(&out).contains(":***@"), "{}", stderr(&out));
    // From ~/.pgpass, with a malformed line (which sqlx logs, line and all).
    let without = db.url.replace(&format!(":{}@", db.password()), "@");
    let from_pgpass = World::new()
        .env("MINIMAX_DL_LOG", "trace")
        .on_database(&without);
    let pgpass = from_pgpass.dir.path().join(".pgpass");
    let lines = format!("broken-line-{}\n*:*:*:*:{}\n", db.password(), db.password());
    std::fs::write(&pgpass, lines).unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = from_pgpass.run(&["status"]).await;
    assert_success(&out);
    assert_no_password(&db, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_through_a_url_file_records_the_host_holding_the_file() {
    let Some((db, world)) = pg_world().await else {
        return;
    };
    let sim = support::sim(support::small_files()).await;
    let mut world = world.with_sim(&sim);
    let url_file = world.path("db_url");
    std::fs::write(&url_file, format!("{}\n", db.url)).unwrap();
    world.db_flag = false;
    let world = world.env("MINIMAX_DL_DATABASE_URL_FILE", url_file.to_str().unwrap());
    let out = world.run(&["fetch", "11"]).await;
    assert_success(&out);
    assert_no_password(&db, &out);
    let job = world.job(11).await;
    support::assert_verified(&world, &sim, &job);
    let host = job["file_host"]
        .as_str()
        .expect("a done job names its host");
    let out = world.run(&["show", "11"]).await;
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "held by host {host} at {}",
            job["path"].as_str().unwrap()
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_queue_is_copied_into_postgres_whole() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    crate::copy::a_queue_is_copied_whole_and_its_source_left_untouched(db.url.clone()).await;
}

/// The fleet test on PostgreSQL: three processes with their own
/// archives, one SIGKILLed, a cap below what the batch needs in a minute.
#[tokio::test(flavor = "multi_thread")]
async fn three_processes_share_one_postgres_queue_and_survive_the_loss_of_one() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let world = World::new().on_database(&db.url);
    crate::fleet::three_processes_share_one_queue_and_survive_the_loss_of_one(world).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_pause_stops_every_process_on_postgres_and_one_probe_lifts_it() {
    let Some((_db, world)) = pg_world().await else {
        return;
    };
    crate::fleet::an_account_pause_stops_every_process_and_one_probe_lifts_it_for_all(world).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_answer_to_one_process_on_postgres_cools_every_process() {
    let Some((_db, world)) = pg_world().await else {
        return;
    };
    crate::fleet::a_rate_limit_answer_to_one_process_cools_every_process(world).await;
}

/// No server needed: a loopback port nothing listens on.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_ends_a_batch_with_exit_5_and_shows_no_password() {
    let (url, refused) = support::unreachable_pg_url("hunter2-0451");
    let port = refused.port();
    let world = World::new().on_database(&url).env("MINIMAX_API_KEY", "k");
    // A database that does not answer is worth trying again: exit 5.
    let out = world.run(&["status"]).await;
    assert_exit(&out, 5);
    let shown = format!("postgres://mdl:***@127.0.0.1:{port}/queue");
    assert!(stderr(&out).contains(&shown), "{}", stderr(&out));
    let out = world.run(&["run", "--exit-when-idle"]).await;
    assert_exit(&out, 5);
    for output in [stdout(&out), stderr(&out)] {
        assert!(!output.contains("hunter2"), "{output}");
    }
    assert!(stderr(&out).contains(&shown), "{}", stderr(&out));
}

/// A daemon started while its database does not answer serves health
/// checks, then hands the port to its full routes once the database
/// answers (here: a forwarder to the test server that starts listening
/// on the daemon's port only after the daemon has said it waits).
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_waiting_for_its_database_starts_serving_when_it_answers() {
    let Some(db) = PgTestDb::create().await else {
        return;
    };
    let real = reqwest::Url::parse(&db.url).unwrap();
    let real = format!("{}:{}", real.host_str().unwrap(), real.port().unwrap());
    let refused = support::RefusedPort::new();
    let port = refused.port();
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    url.set_port(Some(port)).unwrap();
    let world = World::new()
        .on_database(url.as_str())
        .env("MINIMAX_API_KEY", "k");
    let daemon = support::run_listening(&world, &[]).await;
    let health = support::http()
        .get(daemon.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = support::http()
        .get(daemon.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    drop(refused);
    let forwarder = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = forwarder.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(real).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let url = daemon.url("/readyz");
    support::wait_for(Duration::from_secs(60), "the daemon ready", || async {
        let status = support::http().get(&url).send().await.ok()?.status();
        (status.as_u16() == 200).then_some(())
    })
    .await;
    let state = support::http()
        .get(daemon.url("/api/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(state.status().as_u16(), 200);
    assert!(daemon.stop().await.success());
}
