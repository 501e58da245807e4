//! Differential test against the reference: Python 3.11's `asynchat.async_chat`, fed the same
//! chunks under the same terminator schedule (see `python/asynchat_reference.py`).
//!
//! For each of 600 seeded cases (random byte streams, schedules of 1–4 byte delimiters, counts
//! of at least 1 and `None`/EOF, random chunkings) it checks that:
//! - the sequence of `collect_incoming_data` / `found_terminator` calls is identical, piece for
//!   piece, so the complete frames are identical;
//! - the bytes Python still holds when the input runs out (a partial delimiter) are the bytes our
//!   framer holds;
//! - at EOF, where Python loses those bytes (its `recv` closes before returning them), we deliver
//!   them and report the unterminated length.

use std::io::Write;
use std::process::{Command, Stdio};

use asynchat_core::testing::{random_chunks, SplitMix64};
use asynchat_core::{Event, Framer, Terminator};

const CASES: u64 = 600;

struct Case {
    schedule: Vec<Terminator>,
    chunks: Vec<Vec<u8>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn generate(seed: u64) -> Case {
    let mut rng = SplitMix64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let alphabet = b"ab\r\n.";
    let pick = |rng: &mut SplitMix64| -> u8 {
        // Mostly the small alphabet (frequent partial matches), sometimes any byte.
        let r = rng.next_u64();
        if r % 16 == 0 {
            (r >> 8) as u8
        } else {
            alphabet[((r >> 8) % alphabet.len() as u64) as usize]
        }
    };
    let len = (rng.next_u64() % 1500) as usize;
    let data: Vec<u8> = (0..len).map(|_| pick(&mut rng)).collect();
    let steps = 1 + rng.next_u64() % 20;
    let schedule = (0..steps)
        .map(|_| match rng.next_u64() % 10 {
            0..=5 => {
                let n = 1 + (rng.next_u64() % 4) as usize;
                Terminator::from((0..n).map(|_| pick(&mut rng)).collect::<Vec<u8>>())
            }
            // From 1: an explicit `Count(0)` is a deliberate difference (an empty frame at
            // once; Python's `set_terminator(0)` never fires), tested in the framer's own
            // tests. A count that runs down is `Count(0)` in both and is compared here.
            6..=8 => Terminator::Count(1 + rng.next_u64() % 59),
            _ => Terminator::Eof,
        })
        .collect();
    let chunks = random_chunks(&data, seed)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    Case { schedule, chunks }
}

fn encode(case: &Case) -> String {
    let schedule: Vec<String> = case
        .schedule
        .iter()
        .map(|t| match t {
            Terminator::Delimiter(d) => format!("d{}", hex(d)),
            Terminator::Count(n) => format!("c{n}"),
            Terminator::Eof => "n".to_string(),
        })
        .collect();
    let chunks: Vec<String> = case.chunks.iter().map(|c| hex(c)).collect();
    format!("{}|{}", schedule.join(","), chunks.join(","))
}

/// Our side: the same event log format as the Python script, and what happens at EOF.
struct Ours {
    events: Vec<String>,
    held: Vec<u8>,
    after_eof: Vec<Event>,
    frames: usize,
}

fn run_ours(case: &Case) -> Ours {
    let mut schedule = case.schedule.iter();
    let mut f = Framer::new(schedule.next().unwrap().clone())
        .unwrap()
        .with_max_frame(usize::MAX);
    let mut events = Vec::new();
    let mut frames = 0;
    for chunk in &case.chunks {
        f.feed(chunk).unwrap();
        while let Some(ev) = f.poll_event().unwrap() {
            match ev {
                Event::Data(d) => events.push(format!("D{}", hex(&d))),
                Event::Terminator => {
                    events.push("T".into());
                    frames += 1;
                    if let Some(t) = schedule.next() {
                        f.set_terminator(t.clone()).unwrap();
                    }
                }
                Event::End { .. } => panic!("End before EOF"),
            }
        }
    }
    let held = f.clone().take_unprocessed().to_vec();
    f.feed_eof();
    let mut after_eof = Vec::new();
    while let Some(ev) = f.poll_event().unwrap() {
        after_eof.push(ev);
    }
    Ours {
        events,
        held,
        after_eof,
        frames,
    }
}

#[test]
fn framer_matches_python_asynchat() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/asynchat_reference.py"
    );
    let child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "\n!!! SKIPPED: python3 not found ({e}); the differential test against \
                 Python's asynchat did not run. Install Python 3.11 (asynchat was removed in 3.12).\n"
            );
            return;
        }
    };
    let cases: Vec<Case> = (0..CASES).map(generate).collect();
    let input: String = cases.iter().map(|c| encode(c) + "\n").collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "the Python reference failed");
    let lines: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .lines()
        .collect();
    if lines.is_empty() {
        eprintln!("\n!!! SKIPPED: python3 has no asynchat module (Python ≥ 3.12?)\n");
        return;
    }
    assert_eq!(lines.len(), cases.len(), "one answer per case");

    let mut frames = 0;
    for (seed, (case, line)) in cases.iter().zip(&lines).enumerate() {
        let (py_events, py_held) = line.split_once('|').unwrap();
        let py_events: Vec<&str> = py_events.split(',').filter(|s| !s.is_empty()).collect();
        let ours = run_ours(case);
        assert_eq!(
            ours.events,
            py_events,
            "case {seed}: events differ from Python's ({})",
            encode(case)
        );
        assert_eq!(
            hex(&ours.held),
            py_held,
            "case {seed}: held-back bytes differ"
        );

        // At EOF: the held bytes are delivered, an until-EOF terminator fires, and the end says
        // how many bytes of the last frame never got a terminator.
        let since_last_t: u64 = py_events
            .iter()
            .rev()
            .take_while(|e| **e != "T")
            .map(|e| (e.len() as u64 - 1) / 2)
            .sum::<u64>()
            + ours.held.len() as u64;
        let mut want = Vec::new();
        if !ours.held.is_empty() {
            want.push(Event::Data(ours.held.clone().into()));
        }
        let eof_terminator = ours.after_eof.contains(&Event::Terminator);
        if eof_terminator {
            want.push(Event::Terminator);
        }
        want.push(Event::End {
            unterminated: if eof_terminator { 0 } else { since_last_t },
        });
        assert_eq!(ours.after_eof, want, "case {seed}: end of stream");
        frames += ours.frames;
    }
    eprintln!("{CASES} cases, {frames} frames: identical to Python's asynchat");
    assert!(
        frames > 5 * CASES as usize,
        "cases too easy: {frames} frames"
    );
}
