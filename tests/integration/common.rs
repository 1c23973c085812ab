//! Shared by the integration tests: a real server on 127.0.0.1:0 over a temporary store.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use hashsieve::grpc::ServeConfig;
use hashsieve::matcher::{Matcher, MatcherConfig};
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use hashsieve::proto::matcher_client::MatcherClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct TestServer {
    pub address: SocketAddr,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    pub async fn start_in(data_dir: tempfile::TempDir) -> TestServer {
        Self::start_with(data_dir, ServeConfig::default()).await
    }

    pub async fn start_with(data_dir: tempfile::TempDir, config: ServeConfig) -> TestServer {
        let matcher = Matcher::open(MatcherConfig::new(data_dir.path())).unwrap();
        Self::serve(data_dir, Arc::new(matcher), config).await
    }

    /// A server that counts its calls, with the metrics that show them.
    pub async fn start_metered(
        data_dir: tempfile::TempDir,
        mut config: ServeConfig,
    ) -> (TestServer, Arc<hashsieve::metrics::Metrics>) {
        let matcher = Arc::new(Matcher::open(MatcherConfig::new(data_dir.path())).unwrap());
        let metrics = Arc::new(hashsieve::metrics::Metrics::new(matcher.clone()));
        config.metrics = Some(metrics.clone());
        (Self::serve(data_dir, matcher, config).await, metrics)
    }

    async fn serve(data_dir: tempfile::TempDir, matcher: Arc<Matcher>, config: ServeConfig) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            hashsieve::grpc::serve(listener, matcher, config, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            address,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn banks(&self) -> BanksClient<Channel> {
        BanksClient::connect(self.url())
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20)
    }

    pub async fn matcher(&self) -> MatcherClient<Channel> {
        MatcherClient::connect(self.url())
            .await
            .unwrap()
            .max_encoding_message_size(64 << 20)
    }

    /// Stops the server gracefully and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data_dir, dir)
    }
}

/// A PDQ hash as the wire carries it.
pub fn pdq(hex: &str) -> pb::HashValue {
    pb::HashValue {
        algorithm: pb::Algorithm::Pdq as i32,
        hex: hex.into(),
    }
}

/// A request creating an enabled bank whose matches block.
pub fn block_bank(name: &str) -> pb::CreateBankRequest {
    pb::CreateBankRequest {
        bank: Some(pb::Bank {
            name: name.into(),
            action: pb::Action::Block as i32,
            enabled: Some(true),
            ..Default::default()
        }),
    }
}

/// `message` carrying `key` as a Bearer API key, or no key.
pub fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

pub fn testdata(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(path)
}

pub fn read_testdata(path: &str) -> Vec<u8> {
    std::fs::read(testdata(path)).unwrap()
}

/// The real `hashsieve serve` binary on a free port, for the tests that kill it.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    /// Every line the server has logged so far.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// A connection to the server's gRPC address.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Starts the binary on `data_dir` and waits until it serves (its log names the address).
    pub fn start(data_dir: &Path) -> ServerProcess {
        Self::start_with(data_dir, &[])
    }

    /// Like [`ServerProcess::start`], with more `serve` arguments.
    pub fn start_with(data_dir: &Path, args: &[&str]) -> ServerProcess {
        Self::start_on("127.0.0.1:0", data_dir, args)
    }

    /// Like [`ServerProcess::start_with`], listening on `listen`.
    pub fn start_on(listen: &str, data_dir: &Path, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hashsieve"))
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = loop {
            let line = lines.next().expect("server exited before serving").unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep reading the log, so the server never blocks on a full pipe.
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child,
            url: format!("http://{address}"),
            log,
        }
    }

    /// The log lines so far that contain `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|line| line.contains(text)).cloned().collect()
    }

    /// The log lines that contain `text`, once there are at least `count` of them (or after
    /// 10 s): the log is read on another thread, so a line may arrive a moment after the call
    /// that caused it has returned.
    pub fn wait_for_log(&self, text: &str, count: usize) -> Vec<String> {
        let started = std::time::Instant::now();
        loop {
            let lines = self.log_lines(text);
            if lines.len() >= count || started.elapsed() > std::time::Duration::from_secs(10) {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(self) {
        drop(self);
    }

    /// SIGTERM, as container runtimes send to stop a process.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`TERM`, `STOP`, `CONT`…) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit, and returns how it did. Polls without
    /// blocking the test's runtime: the test's connections to the server must go on running
    /// to see its GOAWAY and close, or its graceful drain waits for them.
    pub async fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

/// A test that fails still kills its server, so no process outlives the test run.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
