//! In-process harness: the daemon (`Server`) and a worker (`Worker`) built from the
//! library on a free port inside the test's own runtime, for fast tests of behaviour that
//! needs no process boundary. Crash, signal and systemd cases keep the real binary
//! (`TestEnv::spawn_daemon`, `spawn_worker`).

use std::net::SocketAddr;

use mcpq::client::Client;
use mcpq::config::Settings;
use mcpq::server::Server;
use mcpq::worker::Worker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::TestEnv;

/// A daemon, and optionally a worker, running in this process until [`TestApp::stop`].
pub struct TestApp {
    pub addr: SocketAddr,
    pub settings: Settings,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    worker: Option<JoinHandle<()>>,
}

impl TestEnv {
    /// This environment's settings for an in-process daemon: its database, port 0, no
    /// metrics listener, no embedded worker (add one with `workers`).
    pub fn in_process_settings(&self) -> Settings {
        let mut s = self.settings();
        s.database.path = self.db_path();
        s.server.listen = "127.0.0.1:0".parse().expect("address");
        s.metrics.listen = None;
        s.metrics.worker_listen = None;
        s.server.embedded_workers = 0;
        s
    }

    /// Builds and runs the daemon in-process; with `worker`, a separate worker component
    /// too (as `mcpq worker` would run it, sharing the database).
    pub async fn spawn_app(&self, worker: bool) -> TestApp {
        let settings = self.in_process_settings();
        let shutdown = CancellationToken::new();
        let server = Server::build(settings.clone())
            .await
            .expect("build the server");
        let addr = server.local_addr();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            server.run_until_stopped(stop).await.expect("server ran");
        });
        let worker = if worker {
            let w = Worker::build(&settings, Some(2))
                .await
                .expect("build a worker");
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                w.run_until_stopped(stop).await.expect("worker ran");
            }))
        } else {
            None
        };
        TestApp {
            addr,
            settings,
            shutdown,
            server,
            worker,
        }
    }
}

impl TestApp {
    pub async fn client(&self) -> Client {
        let mut c = self.settings.client.clone();
        c.url = format!("http://{}", self.addr);
        Client::connect(c).await.expect("connect")
    }

    /// Fires the shutdown token and waits for the daemon and the worker to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("server task");
        if let Some(w) = self.worker {
            w.await.expect("worker task");
        }
    }
}
