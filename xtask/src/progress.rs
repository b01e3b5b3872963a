//! What a long task is doing and how far along it is: a bar with an estimate of what is left
//! on a terminal (indicatif), one plain line per step otherwise (CI logs, pipes).

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A task of `total` steps, each announced by [`Progress::step`].
pub struct Progress {
    task: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    /// Drawn only between steps (a step's own output scrolls above it).
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(task: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, about {eta} left)")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(task);
            bar
        });
        Progress { task, total, done: 0, start: Instant::now(), bar }
    }

    /// Start the next step: say which, how far along the task is and about how long is left.
    pub fn step(&mut self, what: &str) {
        if self.done > 0 {
            self.inc();
        }
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.set_message(what.to_owned()),
            None => eprintln!("{}", self.line(what)),
        }
    }

    fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// `[task 2/5] what (12 s so far, about 30 s left)`: the estimate is the steps so far, on
    /// average, for each step left (none before the first is done).
    fn line(&self, what: &str) -> String {
        let elapsed = self.start.elapsed();
        let left = estimate(elapsed, self.done - 1, self.total);
        let left = left.map(|d| format!(", about {} left", secs(d))).unwrap_or_default();
        format!("[{} {}/{}] {what} ({} so far{left})", self.task, self.done, self.total, secs(elapsed))
    }

    /// The task is over: the bar is full and stays, or a last line says how long it took.
    pub fn finish(self) {
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.finish_with_message("done");
            }
            None => eprintln!("[{} {}/{}] done in {}", self.task, self.done, self.total, secs(self.start.elapsed())),
        }
    }
}

/// What is left after `done` of `total` steps took `elapsed` (unknown before the first).
fn estimate(elapsed: Duration, done: u64, total: u64) -> Option<Duration> {
    (done > 0).then(|| elapsed.mul_f64(total.saturating_sub(done) as f64 / done as f64))
}

fn secs(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s => format!("{} min {} s", s / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_average_step_for_each_left() {
        assert_eq!(estimate(Duration::from_secs(10), 0, 5), None);
        assert_eq!(estimate(Duration::from_secs(10), 2, 5), Some(Duration::from_secs(15)));
        assert_eq!(estimate(Duration::from_secs(10), 5, 5), Some(Duration::ZERO));
        assert_eq!(secs(Duration::from_secs(59)), "59 s");
        assert_eq!(secs(Duration::from_secs(185)), "3 min 5 s");
    }

    #[test]
    fn plain_lines_say_the_step_and_the_estimate() {
        let mut p = Progress { task: "bench", total: 4, done: 0, start: Instant::now(), bar: None };
        p.step("build");
        assert_eq!(p.line("build"), "[bench 1/4] build (0 s so far)");
        p.done = 3;
        p.start -= Duration::from_secs(20);
        assert_eq!(p.line("criterion"), "[bench 3/4] criterion (20 s so far, about 20 s left)");
    }
}
