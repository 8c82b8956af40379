//! The processes the bench starts besides itself: a private Mosquitto (when asked for, so the
//! bench's hundred thousand messages do not reach other clients of a shared broker) and the
//! Python baseline subscriber in a virtual environment the bench creates and caches.
//!
//! What this module must never do: leave a child running (each is killed on drop), or write a
//! package index address anywhere (pip uses its own default).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::BenchError;

/// The baseline subscriber, shipped inside the binary and written next to the venv.
const BASELINE_SCRIPT: &str = include_str!("../python/baseline_subscriber.py");

/// A Mosquitto started by the bench on a free port with its default settings (only the
/// listener and persistence off are set).
#[derive(Debug)]
pub struct PrivateMosquitto {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PrivateMosquitto {
    pub async fn start(binary: &Path) -> Result<Self, BenchError> {
        let port = free_port()?;
        let dir = tempfile::tempdir().map_err(|e| BenchError::Io(e.to_string()))?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .map_err(|e| BenchError::Io(e.to_string()))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Io(format!("starting {}: {e}", binary.display())))?;
        let broker = Self {
            port,
            child,
            _dir: dir,
        };
        wait_listening(port).await?;
        Ok(broker)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::Io(format!("finding a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Io(e.to_string()))
}

async fn wait_listening(port: u16) -> Result<(), BenchError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BenchError::Io(format!(
                "mosquitto did not listen on port {port} within 10 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python environment of the baseline: `venv` with paho-mqtt installed.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    pub python: PathBuf,
    pub script: PathBuf,
}

impl PythonEnv {
    /// Creates (once) a virtual environment in `venv` with `python` and installs paho-mqtt
    /// into it with pip; writes the baseline script there.
    pub async fn prepare(python: &str, venv: &Path) -> Result<Self, BenchError> {
        let venv_python = venv.join("bin").join("python");
        if !imports_paho(&venv_python).await {
            tracing::info!(venv = %venv.display(), "creating the Python baseline's venv with paho-mqtt");
            run(Command::new(python).arg("-m").arg("venv").arg(venv)).await?;
            run(Command::new(&venv_python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "paho-mqtt>=2,<3",
            ]))
            .await?;
            if !imports_paho(&venv_python).await {
                return Err(BenchError::Python(format!(
                    "paho-mqtt is not importable in {} after installing it",
                    venv.display()
                )));
            }
        }
        let script = venv.join("baseline_subscriber.py");
        std::fs::write(&script, BASELINE_SCRIPT)
            .map_err(|e| BenchError::Io(format!("{}: {e}", script.display())))?;
        Ok(Self {
            python: venv_python,
            script,
        })
    }
}

async fn imports_paho(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import paho.mqtt.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn run(command: &mut Command) -> Result<(), BenchError> {
    let output = command
        .output()
        .await
        .map_err(|e| BenchError::Python(format!("{command:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(BenchError::Python(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// How the baseline commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineMode {
    /// Readings per commit.
    pub batch: u32,
}

/// A running baseline subscriber.
#[derive(Debug)]
pub struct Baseline {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    committed: u64,
}

impl Baseline {
    /// Starts the subscriber and waits until it is subscribed.
    pub async fn start(
        env: &PythonEnv,
        host: &str,
        port: u16,
        db: &Path,
        mode: BaselineMode,
        client_id: &str,
        latency_out: Option<&Path>,
    ) -> Result<Self, BenchError> {
        let mut command = Command::new(&env.python);
        command
            .arg(&env.script)
            .args(["--host", host, "--port", &port.to_string()])
            .arg("--db")
            .arg(db)
            .args(["--batch", &mode.batch.to_string(), "--client-id", client_id]);
        if let Some(out) = latency_out {
            command.arg("--latency-out").arg(out);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Python(format!("starting the baseline: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Python("the baseline has no stdout".into()))?;
        let mut baseline = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            committed: 0,
        };
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match baseline.lines.next_line().await {
                    Ok(Some(line)) if line == "READY" => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        return Err(BenchError::Python("the baseline exited early".into()));
                    }
                }
            }
        })
        .await;
        match ready {
            Ok(result) => result.map(|()| baseline),
            Err(_) => Err(BenchError::Python(
                "the baseline did not subscribe within 30 s".into(),
            )),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The next committed count it reports (`None` when it has exited).
    pub async fn next_count(&mut self) -> Option<u64> {
        loop {
            let line = self.lines.next_line().await.ok()??;
            if let Some(count) = line.strip_prefix("C ").and_then(|c| c.parse().ok()) {
                self.committed = count;
                return Some(count);
            }
        }
    }

    /// Asks it to stop (its stdin closes), waits for it to write its latencies and exit.
    pub async fn stop(mut self) -> Result<(), BenchError> {
        drop(self.stdin.take());
        let finished = tokio::time::timeout(Duration::from_secs(30), async {
            while self.lines.next_line().await.ok().flatten().is_some() {}
            self.child.wait().await
        })
        .await;
        match finished {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(BenchError::Python(format!(
                "the baseline exited with {status}"
            ))),
            Ok(Err(e)) => Err(BenchError::Python(e.to_string())),
            Err(_) => Err(BenchError::Python(
                "the baseline did not stop within 30 s".into(),
            )),
        }
    }
}
