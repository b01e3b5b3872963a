//! Network namespaces, a veth pair between them, and processes inside them, each behind a guard
//! that cleans up on drop (also when a test panics).

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A veth pair from `a` (interface `a_if`) to `b` (`b_if`), addressed `a4`/24 and `b4`/24, up.
pub fn veth(a: &NetNs, a_if: &str, a4: &str, b: &NetNs, b_if: &str, b4: &str) {
    ip(&["link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    for (ns, ifname, addr) in [(a, a_if, a4), (b, b_if, b4)] {
        ns.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", ifname]);
        ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
    }
}

/// A tag unique to this process and call, for interface names (at most 15 bytes with a
/// short prefix).
pub fn tag() -> String {
    format!("{}{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A named network namespace, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME argv...`, waiting for it.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(argv).output().expect("ip netns exec runs")
    }

    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(out.status.success(), "{} in {}: {}", argv.join(" "), self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start a process inside the namespace; killed on drop of the guard.
    pub fn spawn(&self, argv: &[&str], log: PathBuf) -> Proc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        Proc::spawn(cmd, log)
    }

    /// Run `f` on a thread that has entered this namespace (for in-process sockets and
    /// netlink, e.g. HTTP clients and XDP attach).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("netns thread")
    }
}

/// Move the calling thread into the namespace at `path` (threads it starts are in it too).
pub fn enter(path: &str) {
    let ns = File::open(path).expect("netns file");
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A process in a namespace: SIGTERM on drop, then SIGKILL if it has not stopped in 5 s.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Start `cmd` with its output in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let file = File::create(&log).expect("log file");
        let child = cmd
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        Proc { child: Some(child), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Send SIGTERM and wait for the exit status (None if it had to be killed).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_with(libc::SIGTERM)
    }

    /// Send `signal` (a program's own "stop now") and wait up to 5 s for the exit status;
    /// then SIGKILL (None).
    pub fn stop_with(&mut self, signal: i32) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Wait for the process to exit on its own (None if it is still running after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, as a crash would: no clean-up runs in the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bpffs of the test's own, mounted in the host's mount namespace so that pins made by a
/// daemon inside `ip netns exec` (which gets a copy of this mount) outlive that daemon, as
/// /sys/fs/bpf does on a real host. Unmounted on drop, which releases whatever is still
/// pinned in it (links included: XDP leaves the interface).
pub struct BpfFs {
    pub dir: PathBuf,
}

impl BpfFs {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "spw-bpffs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("bpffs mount point");
        let out = Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir).output().expect("mount runs");
        assert!(out.status.success(), "mount -t bpf: {}", String::from_utf8_lossy(&out.stderr));
        BpfFs { dir }
    }

    /// The pin directory a daemon is given (`server.bpffs_dir`).
    pub fn pin_dir(&self) -> PathBuf {
        self.dir.join("spillway")
    }

    /// Everything pinned below the mount point, as relative paths (not the kernel's own
    /// `maps.debug` and `progs.debug` iterators, which every bpffs has).
    pub fn pins(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(&self.dir).unwrap_or(&p).display().to_string();
                if rel == "maps.debug" || rel == "progs.debug" {
                    continue;
                }
                out.push(rel);
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

impl Default for BpfFs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two namespaces joined by a veth pair with documentation addresses:
/// client 192.0.2.1 / 2001:db8::1, server 192.0.2.53 / 2001:db8::53.
pub struct Topology {
    pub client: NetNs,
    pub server: NetNs,
    pub client_if: String,
    pub server_if: String,
}

pub const CLIENT_ADDR4: &str = "192.0.2.1";
pub const SERVER_ADDR4: &str = "192.0.2.53";
pub const CLIENT_ADDR6: &str = "2001:db8::1";
pub const SERVER_ADDR6: &str = "2001:db8::53";

impl Topology {
    pub fn new() -> Self {
        let client = NetNs::new("spw-c");
        let server = NetNs::new("spw-s");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let client_if = format!("spwc{tag}");
        let server_if = format!("spws{tag}");
        ip(&[
            "link",
            "add",
            &client_if,
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            &server_if,
            "netns",
            &server.name,
        ]);
        for (ns, ifname, a4, a6) in
            [(&client, &client_if, CLIENT_ADDR4, CLIENT_ADDR6), (&server, &server_if, SERVER_ADDR4, SERVER_ADDR6)]
        {
            ns.exec_ok(&["ip", "addr", "add", &format!("{a4}/24"), "dev", ifname]);
            ns.exec_ok(&["ip", "addr", "add", &format!("{a6}/64"), "dev", ifname, "nodad"]);
            ns.exec_ok(&["ip", "link", "set", ifname, "up"]);
        }
        Topology { client, server, client_if, server_if }
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

/// The `spillway` binary of the same build as the running program (target/<profile>/spillway,
/// next to a binary or one level above a test in deps/), or `SPILLWAY_BIN`.
pub fn spillway_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SPILLWAY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("own exe path");
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|d| d.join("spillway")).collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "spillway not found at {candidates:?}: build it first (`cargo build -p spillway`; cargo xtask test does)"
        )
    })
}
