//! The one way to run a simulator in the background of a tokio runtime: bind an address, serve on a
//! spawned task, and stop it again ([`Running`]). The demo, the exporter's integration tests and
//! benchmarks and this crate's own tests all start their simulator through here.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Simulator;

/// A simulator serving on a bound address in the background. Dropping it stops the server (open
/// connections finish their current request); [`Running::shutdown`] also waits for that.
#[derive(Debug)]
pub struct Running {
    sim: Arc<Simulator>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Simulator {
    /// Serves on a free port of 127.0.0.1 in the background; see [`Running`].
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn spawn_loopback(self: &Arc<Self>) -> io::Result<Running> {
        self.spawn_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds `addr` (port 0 picks a free one) and serves on it in the background; see [`Running`].
    /// Must be called inside a tokio runtime, which the server then runs on.
    ///
    /// # Errors
    /// The bind error, so the caller can name the flag or address that caused it.
    pub async fn spawn_on(self: &Arc<Self>, addr: SocketAddr) -> io::Result<Running> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        // A dropped sender resolves `stopped` as well, which is what makes drop stop the server.
        let task = tokio::spawn(Arc::clone(self).serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(Running { sim: Arc::clone(self), addr, stop: Some(stop), task: Some(task) })
    }
}

impl Running {
    /// The simulator being served, to script calls, set faults and read the truth.
    pub fn sim(&self) -> &Arc<Simulator> {
        &self.sim
    }

    /// The bound address (with the actual port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the server, such as `http://127.0.0.1:41234`: what the exporter's `--cec.url` takes.
    /// An unspecified bind address (0.0.0.0, ::) is shown as the loopback address of its family, which
    /// reaches the same server.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        format!("http://{addr}")
    }

    /// Stops accepting connections and waits until the open ones have finished (at most the server's
    /// drain timeout); once it returns, the port refuses connections.
    ///
    /// # Errors
    /// The server's own error, or the server task's panic as an [`io::Error`].
    pub async fn shutdown(mut self) -> io::Result<()> {
        drop(self.stop.take());
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropping the sender (if `shutdown` has not) is the stop signal; the task drains on its own.
        drop(self.stop.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sim_config;
    use crate::Traffic;
    use std::time::Duration;

    async fn refused(addr: SocketAddr) -> bool {
        tokio::net::TcpStream::connect(addr).await.is_err()
    }

    #[tokio::test]
    async fn serves_on_loopback_until_shut_down() {
        let sim = Simulator::new(sim_config(Traffic::None, Duration::ZERO));
        let running = sim.spawn_loopback().await.unwrap();
        let addr = running.addr();
        assert_eq!(addr.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(addr.port(), 0, "the bound port, not the requested 0");
        assert_eq!(running.url(), format!("http://127.0.0.1:{}", addr.port()));
        assert!(Arc::ptr_eq(running.sim(), &sim));
        let body = reqwest::get(format!("{}/sim/stats", running.url())).await.unwrap().text().await.unwrap();
        assert!(body.contains("\"business_requests\":0"), "{body}");
        running.shutdown().await.unwrap();
        assert!(refused(addr).await);
        assert_eq!(sim.stats().requests_of("control", 200), 1);
    }

    #[tokio::test]
    async fn drop_stops_the_server() {
        let sim = Simulator::new(sim_config(Traffic::None, Duration::ZERO));
        let running = sim.spawn_loopback().await.unwrap();
        let addr = running.addr();
        assert!(!refused(addr).await);
        drop(running);
        // The spawned task sees the signal at its next poll; give it a moment on this runtime.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !refused(addr).await {
            assert!(std::time::Instant::now() < deadline, "still accepting 5 s after drop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn unspecified_address_shows_as_loopback_and_bind_errors_surface() {
        let sim = Simulator::new(sim_config(Traffic::None, Duration::ZERO));
        let running = sim.spawn_on(SocketAddr::from(([0, 0, 0, 0], 0))).await.unwrap();
        assert_eq!(running.url(), format!("http://127.0.0.1:{}", running.addr().port()));
        let taken = sim.spawn_on(running.addr()).await.unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
    }
}
