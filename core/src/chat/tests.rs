use std::sync::{Arc, Mutex};

use std::time::Duration;

use super::*;
use crate::error::{Error, PeerError};
use crate::framer::OverLongPolicy;
use crate::producer::SimpleProducer;
use crate::terminator::Terminator;
use crate::testing::{Harness, Replay};

/// A protocol driven by its input lines, recording every callback in a shared log.
#[derive(Default)]
struct Script {
    log: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn with_log() -> (Self, Arc<Mutex<Vec<String>>>) {
        let s = Self::default();
        let log = s.log.clone();
        (s, log)
    }

    fn note(&self, s: impl Into<String>) {
        self.log.lock().unwrap().push(s.into());
    }
}

impl Protocol for Script {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }

    fn connected(&mut self, ctx: &mut Context<'_>) {
        self.note("connected");
        ctx.push("hi\n");
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        let line = String::from_utf8_lossy(&frame).into_owned();
        self.note(format!("frame {line}"));
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some("close"), _) => ctx.close(),
            (Some("bye"), _) => {
                ctx.push("bye\n");
                ctx.close_when_done();
            }
            (Some("big"), Some(n)) => ctx.push(vec![b'x'; n as usize]),
            (Some("count"), Some(n)) => ctx.set_terminator(n).unwrap(),
            (Some("eof"), _) => ctx.set_terminator(Terminator::Eof).unwrap(),
            (Some("timer"), Some(ms)) => {
                ctx.set_timer(ms as u32, ctx.now() + Duration::from_millis(ms));
            }
            (Some("cancel"), Some(id)) => ctx.cancel_timer(id as u32),
            _ => {
                ctx.push(frame);
                ctx.push("\n");
                if ctx.terminator() != Terminator::from("\n") {
                    ctx.set_terminator("\n").unwrap();
                }
            }
        }
    }

    fn peer_closed(&mut self, ctx: &mut Context<'_>, unterminated: u64) {
        let partial = ctx.take_incoming();
        self.note(format!(
            "peer_closed {unterminated} {}",
            String::from_utf8_lossy(&partial)
        ));
        ctx.close_when_done();
    }

    fn frame_too_long(&mut self, ctx: &mut Context<'_>, limit: usize) {
        self.note(format!("too long {limit}"));
        ctx.push("ERR too long\n");
    }

    fn timeout(&mut self, ctx: &mut Context<'_>, timer: Timer) {
        self.note(format!("timeout {timer:?}"));
        if timer == Timer::Idle {
            ctx.close_because(CloseReason::TimedOut);
        }
    }

    fn closed(&mut self, reason: &CloseReason) {
        self.note(format!("closed {reason:?}"));
    }
}

fn log(l: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    l.lock().unwrap().clone()
}

#[test]
fn connecting_to_open_delivers_output_queued_before_the_connect() {
    let (p, l) = Script::with_log();
    let mut h = Harness::connecting(p);
    assert_eq!(h.state(), State::Connecting);
    assert_eq!(
        h.interest(),
        Interest {
            readable: false,
            writable: true
        }
    );
    h.with_context(|_, ctx| ctx.push("early\n"));
    assert_eq!(
        h.output(),
        b"",
        "nothing is written before the connect completes"
    );
    h.connect();
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.take_output(), "early\nhi\n");
    assert_eq!(log(&l), ["connected"]);
}

#[test]
fn connecting_to_closed_on_connect_refused_is_a_typed_io_reason() {
    let (p, l) = Script::with_log();
    let mut h = Harness::connecting(p);
    h.fail(io::Error::from(io::ErrorKind::ConnectionRefused));
    assert_eq!(h.state(), State::Closed);
    match h.close_reason() {
        Some(CloseReason::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
        other => panic!("unexpected reason {other:?}"),
    }
    assert_eq!(log(&l).len(), 1, "only closed() ran: {:?}", log(&l));
    assert!(log(&l)[0].starts_with("closed Io"));
}

#[test]
fn close_when_done_before_connect_still_connects_then_flushes() {
    let (p, l) = Script::with_log();
    let mut h = Harness::connecting(p);
    h.with_context(|_, ctx| {
        ctx.push("request\n");
        ctx.close_when_done();
    });
    assert_eq!(h.state(), State::Connecting);
    h.connect();
    assert_eq!(h.take_output(), "request\n");
    assert_eq!(h.close_reason(), Some(&CloseReason::Done));
    assert_eq!(log(&l), ["connected", "closed Done"]);
}

#[test]
fn close_when_done_while_connecting_goes_straight_to_closing() {
    // The diagram's Connecting -> Closing edge: the connect completes with output still queued.
    let (p, _) = Script::with_log();
    let mut h = Harness::connecting(p);
    h.set_peer_reading(false);
    h.with_context(|_, ctx| {
        ctx.push("request\n");
        ctx.close_when_done();
    });
    h.connect();
    assert_eq!(h.state(), State::Closing);
    h.set_peer_reading(true);
    assert_eq!(h.take_output(), "request\n");
    assert_eq!(h.close_reason(), Some(&CloseReason::Done));
}

#[test]
fn open_closing_closed_flushes_everything_to_a_slow_reader() {
    let (p, l) = Script::with_log();
    // Water marks above the reply, so "bye" is not held back by backpressure.
    let config = Config::default().water_marks(16 << 20, 32 << 20);
    let mut h = Harness::with_config(p, &config);
    h.take_output();
    h.set_write_chunk(1000).set_peer_reading(false);
    h.send("big 5000000\nbye\n");
    assert_eq!(h.state(), State::Closing);
    assert!(h.interest().readable, "closing still drains input");
    h.send("ignored\n");
    h.set_peer_reading(true);
    let out = h.take_output();
    assert_eq!(out.len(), 5_000_000 + 4);
    assert!(out.ends_with(b"xbye\n"));
    assert_eq!(h.state(), State::Closed);
    assert!(h.peer_saw_eof());
    let l = log(&l);
    assert!(!l.iter().any(|s| s.contains("ignored")), "{l:?}");
    assert_eq!(l.last().unwrap(), "closed Done");
}

#[test]
fn close_inside_a_callback_stops_every_later_callback() {
    // Python keeps calling found_terminator for "b" and "c" after close(); we do not.
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.take_output();
    h.set_peer_reading(false);
    h.send("echoed\nclose\nb\nc\n");
    assert_eq!(
        log(&l),
        ["connected", "frame echoed", "frame close", "closed Aborted"],
        "no callback after close()"
    );
    assert_eq!(h.take_output(), "", "queued output was dropped by close()");
}

#[test]
fn half_close_from_the_peer_keeps_queued_output() {
    // Python drops everything queued when the peer half-closes (bpo-35913).
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.take_output();
    h.set_peer_reading(false);
    h.send("big 8388608\n").send_eof();
    h.set_peer_reading(true);
    assert_eq!(h.take_output().len(), 8_388_608);
    assert_eq!(h.close_reason(), Some(&CloseReason::PeerClosed));
    assert!(log(&l).contains(&"peer_closed 0 ".to_string()));
}

#[test]
fn partial_frame_at_eof_reaches_the_protocol() {
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.send("whole\npartial\r").send_eof();
    assert!(
        log(&l).contains(&"peer_closed 8 partial\r".to_string()),
        "{:?}",
        log(&l)
    );
}

#[test]
fn header_then_count_then_lines_is_chunking_invariant() {
    let input = "count 5\nabcdeline\neof\nrest of stream";
    let t = Replay::new(input).assert_invariant(Script::default);
    assert_eq!(t.output, "hi\nabcde\nline\nrest of stream\n");
    assert_eq!(t.close_reason, Some(CloseReason::PeerClosed));
}

#[test]
fn over_long_frame_closes_with_a_typed_error() {
    let (p, l) = Script::with_log();
    let mut h = Harness::with_config(p, &Config::default().max_frame(8));
    h.send("short\n0123456789\nnever\n");
    assert_eq!(
        h.close_reason(),
        Some(&CloseReason::Error(
            PeerError::FrameTooLong { limit: 8 }.into()
        ))
    );
    assert!(!log(&l).iter().any(|s| s.contains("never")));
}

#[test]
fn skip_policy_tells_the_protocol_and_carries_on() {
    let (p, l) = Script::with_log();
    let config = Config::default()
        .max_frame(8)
        .over_long(OverLongPolicy::Skip);
    let mut h = Harness::with_config(p, &config);
    h.take_output();
    h.send("0123456789\nnext\n");
    assert_eq!(h.take_output(), "ERR too long\nnext\n");
    assert_eq!(h.state(), State::Open);
    assert!(log(&l).contains(&"too long 8".to_string()));
}

#[test]
fn a_count_over_its_bound_closes_as_the_protocols_misuse_before_holding_it() {
    let (p, _) = Script::with_log();
    let mut h = Harness::with_config(p, &Config::default().max_counted_frame(50));
    h.take_output();
    h.send("count 100\n");
    assert_eq!(h.state(), State::Open, "nothing is held yet");
    h.send("z");
    assert_eq!(
        h.close_reason(),
        Some(&CloseReason::Error(
            Misuse::CountOverLimit {
                count: 100,
                limit: 50
            }
            .into()
        ))
    );
}

#[test]
fn counted_bodies_are_not_bound_by_the_line_limit() {
    // 70 kB and 1 MiB length-prefixed bodies under the default config (line limit 64 KiB).
    for len in [70_000usize, 1 << 20] {
        let (p, _) = Script::with_log();
        let mut h = Harness::new(p);
        h.take_output();
        h.send(format!("count {len}\n"));
        let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        for piece in body.chunks(8192) {
            h.send(piece);
        }
        let mut expected = body;
        expected.push(b'\n');
        assert_eq!(h.take_output(), expected, "a body of {len} bytes");
        assert_eq!(h.state(), State::Open);
    }
}

#[test]
fn count_zero_delivers_an_empty_frame_at_once() {
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.take_output();
    // The body of `count 0` is empty: the echo of an empty frame, then the next line.
    h.send("count 0\nnext\n");
    assert_eq!(h.take_output(), "\nnext\n");
    assert!(log(&l).contains(&"frame ".to_string()), "{:?}", log(&l));
}

#[test]
fn a_protocol_that_sets_count_zero_in_every_callback_is_closed_not_spun() {
    /// After its first line, ends every frame at once, forever.
    struct Spin(std::rc::Rc<std::cell::Cell<u32>>);
    impl Protocol for Spin {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, _: Frame<'_>) {
            self.0.set(self.0.get() + 1);
            ctx.set_count(0);
        }
    }
    let frames = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut h = Harness::new(Spin(frames.clone()));
    h.send("go\nmore\n");
    assert_eq!(
        h.close_reason(),
        Some(&CloseReason::Error(
            Misuse::EndlessEmptyFrames { frames: 1024 }.into()
        ))
    );
    // The line, then the empty frames up to the bound.
    assert_eq!(frames.get(), 1 + 1024);
}

#[test]
fn many_zero_length_bodies_in_one_read_are_not_a_loop() {
    let (p, _) = Script::with_log();
    let mut h = Harness::new(p);
    h.take_output();
    h.send("count 0\n".repeat(5000));
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.take_output(), "\n".repeat(5000));
}

#[test]
fn a_count_that_ran_down_collects_the_rest_and_fires_nothing_more() {
    /// Counts frames; names no new terminator after its first count.
    struct Once(std::rc::Rc<std::cell::Cell<u32>>);
    impl Protocol for Once {
        fn first_terminator(&self) -> Terminator {
            Terminator::Count(3)
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {
            self.0.set(self.0.get() + 1);
        }
        fn peer_closed(&mut self, ctx: &mut Context<'_>, unterminated: u64) {
            assert_eq!(unterminated, 5);
            assert_eq!(ctx.take_incoming(), "defgh");
            ctx.close_when_done();
        }
    }
    let frames = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut h = Harness::new(Once(frames.clone()));
    h.send("abcde");
    h.send("fgh");
    assert_eq!(frames.get(), 1, "one frame, never an empty one after it");
    h.send_eof();
    assert_eq!(frames.get(), 1);
    assert_eq!(h.close_reason(), Some(&CloseReason::PeerClosed));
}

#[test]
fn idle_timeout_fires_on_time_and_input_rearms_it() {
    let (p, l) = Script::with_log();
    let config = Config::default().idle_timeout(Some(Duration::from_secs(10)));
    let mut h = Harness::with_config(p, &config);
    h.advance(Duration::from_secs(9));
    h.send("ping\n");
    h.advance(Duration::from_secs(9));
    assert_eq!(h.state(), State::Open, "input re-armed the idle timer");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.close_reason(), Some(&CloseReason::TimedOut));
    assert_eq!(h.elapsed(), Duration::from_secs(19));
    assert!(log(&l).contains(&"timeout Idle".to_string()));
    assert_eq!(h.chat().poll_timeout(), None);
}

#[test]
fn custom_timers_fire_in_order_and_can_be_cancelled() {
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.send("timer 300\ntimer 100\ntimer 200\ncancel 200\n");
    assert_eq!(
        h.chat().poll_timeout(),
        Some(h.now() + Duration::from_millis(100))
    );
    h.advance(Duration::from_secs(1));
    let fired: Vec<String> = log(&l)
        .into_iter()
        .filter(|s| s.starts_with("timeout"))
        .collect();
    assert_eq!(fired, ["timeout Custom(100)", "timeout Custom(300)"]);
}

#[test]
fn backpressure_stops_reading_above_high_and_resumes_below_low() {
    let (p, l) = Script::with_log();
    let config = Config::default().water_marks(1000, 4000);
    let mut h = Harness::with_config(p, &config);
    h.take_output();
    h.set_peer_reading(false);
    h.send("big 5000\nsecond\nthird\n");
    assert!(!h.interest().readable, "above the high water mark");
    assert!(h.unprocessed_len() > 0 || !log(&l).contains(&"frame second".to_string()));
    assert!(
        !log(&l).contains(&"frame second".to_string()),
        "delivery paused too"
    );
    h.set_write_chunk(100).set_peer_reading(true);
    assert!(log(&l).contains(&"frame third".to_string()));
    assert_eq!(h.unprocessed_len(), 0);
    assert!(h.take_output().ends_with(b"second\nthird\n"));
}

#[test]
fn outbox_hard_limit_closes_with_a_typed_error() {
    let (p, l) = Script::with_log();
    let mut h = Harness::with_config(p, &Config::default().outbox_limit(100));
    h.set_peer_reading(false);
    h.send("big 101\n");
    assert_eq!(
        h.close_reason(),
        Some(&CloseReason::Error(Error::OutboxFull { limit: 100 }))
    );
    assert_eq!(
        log(&l).iter().filter(|s| s.starts_with("closed")).count(),
        1
    );
}

#[test]
fn closing_to_closed_by_error_and_closed_runs_once() {
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.set_peer_reading(false);
    h.send("big 10\nbye\n");
    assert_eq!(h.state(), State::Closing);
    h.fail(io::Error::from(io::ErrorKind::ConnectionReset));
    h.chat_mut().close();
    h.send("more\n").send_eof();
    assert_eq!(h.state(), State::Closed);
    let closes: Vec<String> = log(&l)
        .into_iter()
        .filter(|s| s.starts_with("closed"))
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert!(closes[0].contains("Io"));
}

#[test]
fn eof_terminator_delivers_the_body_at_the_end() {
    let (p, l) = Script::with_log();
    let mut h = Harness::new(p);
    h.send("eof\nall of ").send("this").send_eof();
    assert!(
        log(&l).contains(&"frame all of this".to_string()),
        "{:?}",
        log(&l)
    );
    assert!(h.take_output().ends_with(b"all of this\n"));
    assert_eq!(h.close_reason(), Some(&CloseReason::PeerClosed));
}

#[test]
fn producers_and_zero_copy_read_path() {
    struct Files;
    impl Protocol for Files {
        fn first_terminator(&self) -> Terminator {
            "\r\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
            ctx.push_producer(SimpleProducer::new(frame, 3));
            ctx.push_slice(b"|");
        }
    }
    let now = Instant::now();
    let mut chat = Chat::new(Files).unwrap();
    chat.handle_connected(now);
    let n = chat.handle_read_with(now, |buf| {
        assert!(buf.capacity() >= MIN_READ);
        buf.extend_from_slice(b"abcdefg\r\n");
        9
    });
    assert_eq!(n, Some(9));
    let mut slices = [IoSlice::new(&[]); 8];
    let k = chat.poll_transmit(&mut slices);
    let out: Vec<u8> = slices[..k].iter().flat_map(|s| s.to_vec()).collect();
    assert_eq!(out, b"abcdefg|");
    chat.handle_written(out.len());
    chat.handle_eof(now);
    assert_eq!(
        chat.handle_read_with(now, |_| ()),
        None,
        "no reads after EOF"
    );
    assert_eq!(chat.close_reason(), Some(&CloseReason::PeerClosed));
}

#[test]
fn a_frame_from_one_read_reaches_found_terminator_without_a_copy() {
    struct Ptrs(Vec<(usize, usize)>);
    impl Protocol for Ptrs {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _ctx: &mut Context<'_>, frame: Frame<'_>) {
            self.0.push((frame.as_ptr() as usize, frame.len()));
        }
    }
    // Frames of an eighth of the read buffer or more are split off it, not copied.
    let mut h = Harness::new(Ptrs(Vec::new()));
    h.send(format!("{}\n{}\n", "1".repeat(600), "2".repeat(600)));
    let p = &h.protocol().0;
    assert_eq!(
        p[0].0 + p[0].1 + 1,
        p[1].0,
        "consecutive slices of one buffer"
    );
}

#[test]
fn upgrade_takes_unprocessed_bytes_and_output() {
    struct StartTls(Option<Bytes>);
    impl Protocol for StartTls {
        fn first_terminator(&self) -> Terminator {
            "\r\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
            if &frame[..] == b"STARTTLS" {
                ctx.push("220 go ahead\r\n");
                ctx.pause_reading();
                self.0 = Some(ctx.take_unprocessed());
            }
        }
    }
    let mut h = Harness::new(StartTls(None));
    h.set_peer_reading(false);
    h.send("STARTTLS\r\n\x16\x03\x01hello");
    assert!(!h.interest().readable);
    assert_eq!(h.protocol().0.as_deref(), Some(&b"\x16\x03\x01hello"[..]));
    let now = h.now();
    let mut chat = std::mem::replace(h.chat_mut(), Chat::new(StartTls(None)).unwrap());
    chat.handle_read(now, b"more");
    let parts = chat.into_parts();
    assert_eq!(parts.unprocessed, "more", "paused: bytes stay undelivered");
    assert_eq!(parts.outbox.queued_bytes(), 14);
}

#[test]
fn empty_first_terminator_is_a_typed_error_the_protocol_hears() {
    struct Bad(std::rc::Rc<std::cell::RefCell<Vec<CloseReason>>>);
    impl Protocol for Bad {
        fn first_terminator(&self) -> Terminator {
            Terminator::from("")
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
        fn closed(&mut self, reason: &CloseReason) {
            self.0.borrow_mut().push(reason.clone());
        }
    }
    let heard = std::rc::Rc::default();
    assert_eq!(
        Chat::new(Bad(std::rc::Rc::clone(&heard))).err(),
        Some(Misuse::EmptyDelimiter)
    );
    assert_eq!(
        *heard.borrow(),
        [CloseReason::Error(Misuse::EmptyDelimiter.into())]
    );
}

#[test]
fn a_timer_rearmed_for_now_inside_timeout_does_not_hang() {
    struct Storm(u32);
    impl Protocol for Storm {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn connected(&mut self, ctx: &mut Context<'_>) {
            ctx.set_timer(1, ctx.now());
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
        fn timeout(&mut self, ctx: &mut Context<'_>, _: Timer) {
            self.0 += 1;
            ctx.set_timer(1, ctx.now());
        }
    }
    let now = Instant::now();
    let mut chat = Chat::new(Storm(0)).unwrap();
    chat.handle_connected(now);
    chat.handle_timeout(now);
    assert_eq!(chat.protocol().0, 1, "one firing per handle_timeout call");
    chat.handle_timeout(now);
    assert_eq!(chat.protocol().0, 2);
}

#[test]
fn a_chat_holds_no_read_buffer_once_everything_read_is_delivered() {
    // The mio driver does not read again after a short read (the socket is drained), so the
    // buffer must be given up right after the read that emptied it, not by a later one.
    struct Owned;
    impl Protocol for Owned {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
            ctx.push(frame);
        }
    }
    fn check<P: Protocol>(protocol: P) {
        let now = Instant::now();
        let mut chat = Chat::new(protocol).unwrap();
        chat.handle_connected(now);
        chat.handle_read_with(now, |buf| buf.extend_from_slice(b"one\ntw"));
        chat.handle_read_with(now, |buf| buf.extend_from_slice(b"o\nthree\n"));
        assert_eq!(
            chat.core.framer.capacity(),
            0,
            "all delivered: no buffer held"
        );
        chat.handle_read(now, b"four\n");
        assert_eq!(chat.core.framer.capacity(), 0, "the same for copied input");
        assert_eq!(chat.queued_bytes(), 15);
    }
    check(Owned);
}

#[test]
fn a_chat_stays_small_enough_for_the_idle_memory_budget() {
    // The mio driver aims at 512 B of memory per idle connection (BENCHMARKS.md, "Idle
    // memory"); the chat is most of it. Growing it past this bound breaks that aim.
    struct Unit;
    impl Protocol for Unit {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
    }
    let size = std::mem::size_of::<Chat<Unit>>();
    assert!(size <= 360, "Chat is {size} bytes");
}

#[test]
fn read_reservations_grow_for_bulk_and_shrink_for_chatter() {
    struct Sink;
    impl Protocol for Sink {
        fn first_terminator(&self) -> Terminator {
            Terminator::Eof
        }
        fn collect_incoming_data(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
        fn found_terminator(&mut self, _: &mut Context<'_>, _: Frame<'_>) {}
    }
    let now = Instant::now();
    let mut chat = Chat::new(Sink).unwrap();
    chat.handle_connected(now);
    let mut reserved = Vec::new();
    // Reads that fill whatever spare capacity they are given: the reservation doubles to the cap.
    for _ in 0..6 {
        chat.handle_read_with(now, |buf| {
            let spare = buf.capacity() - buf.len();
            reserved.push(spare);
            buf.resize(buf.len() + spare, 0);
        });
    }
    assert!(
        reserved[0] >= MIN_READ && reserved[0] < 2 * MIN_READ,
        "{reserved:?}"
    );
    assert!(reserved[5] >= DEFAULT_READ_SIZE, "{reserved:?}");
    // Reads of a few bytes: it shrinks back towards MIN_READ.
    for _ in 0..8 {
        chat.handle_read_with(now, |buf| buf.extend_from_slice(b"ping"));
    }
    assert_eq!(chat.core.next_read as usize, MIN_READ);
}

/// A header line `len N` announces an N-byte body (a `Count`), other lines are echoed upper-case.
/// With `in_collect`, the count is set as soon as the line's data arrives, from
/// `collect_incoming_data`, which must apply it after the line all the same.
#[derive(Default)]
struct Switcher {
    in_collect: bool,
    in_body: bool,
    /// The header was taken from `collect_incoming_data`: its `found_terminator` is empty.
    header_taken: bool,
}

impl Switcher {
    fn line(&mut self, ctx: &mut Context<'_>, line: &[u8]) {
        if let Some(n) = line.strip_prefix(b"len ") {
            let n: u64 = std::str::from_utf8(n).unwrap().parse().unwrap();
            ctx.set_terminator(Terminator::Count(n)).unwrap();
            self.in_body = true;
        } else {
            ctx.push(line.to_ascii_uppercase());
            ctx.push("\n");
        }
    }
}

impl Protocol for Switcher {
    fn first_terminator(&self) -> Terminator {
        "\r\n".into()
    }

    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        // A lent piece is a whole line, its delimiter found: the count set now applies after
        // it. (A shared piece may be followed by more of its line: left to `found_terminator`.)
        if self.in_collect && !self.in_body && data.is_lent() && data.starts_with(b"len ") {
            self.line(ctx, &data);
            self.header_taken = true;
        } else {
            ctx.collect(data);
        }
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        if std::mem::take(&mut self.header_taken) {
            assert!(frame.is_empty());
        } else if self.in_body {
            ctx.push(format!("[{} body bytes]\n", frame.len()));
            ctx.set_terminator("\r\n").unwrap();
            self.in_body = false;
        } else {
            self.line(ctx, &frame);
        }
    }
}

#[test]
fn lent_frames_give_the_same_output_under_any_chunking_and_terminator_switch() {
    // Whole input: lines lent; byte by byte: every line in pieces, shared.
    let input = "ab\r\nlen 5\r\nx\r\nyzcd\r\n\r\nlen 1\r\nzlen 2\r\n\r\nef\r\ngh";
    let t = Replay::new(input).assert_invariant(Switcher::default);
    assert_eq!(
        t.output,
        "AB\n[5 body bytes]\nCD\n\n[1 body bytes]\n[2 body bytes]\nEF\n"
    );
}

#[test]
fn a_terminator_set_in_collect_incoming_data_applies_after_the_frame_lent_or_not() {
    let input = "ab\r\nlen 5\r\nx\r\nyzcd\r\nlen 1\r\nzef\r\n";
    let t = Replay::new(input).assert_invariant(|| Switcher {
        in_collect: true,
        ..Switcher::default()
    });
    assert_eq!(t.output, "AB\n[5 body bytes]\nCD\n[1 body bytes]\nEF\n");
}

#[test]
fn frames_received_whole_and_short_are_lent_the_others_shared() {
    #[derive(Default)]
    struct Counting {
        lent: Vec<usize>,
        shared: Vec<usize>,
    }
    impl Protocol for Counting {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _ctx: &mut Context<'_>, frame: Frame<'_>) {
            if frame.is_lent() {
                self.lent.push(frame.len());
            } else {
                self.shared.push(frame.len());
            }
        }
    }
    let mut h = Harness::new(Counting::default());
    h.send("a\nbb\n\nhalf");
    h.send(" a line\n");
    // Lending resumes after a frame that was not lent.
    let long = "x".repeat(crate::outbox::DEFAULT_COALESCE_BELOW);
    h.send(format!("{long}\nccc\n"));
    assert_eq!(h.protocol().lent, [1, 2, 0, 3], "whole and short: lent");
    assert_eq!(
        h.protocol().shared,
        [11, crate::outbox::DEFAULT_COALESCE_BELOW],
        "in pieces, or as long as a push the outbox sends as it is: shared"
    );
}

#[test]
fn counted_frames_received_whole_and_short_are_lent_too() {
    // `len N` lines announce N-byte bodies: each body is lent when it is whole in the buffer,
    // and the same bytes come through when it is not.
    #[derive(Default)]
    struct Bodies {
        in_body: bool,
        bodies: Vec<(Vec<u8>, bool)>,
    }
    impl Protocol for Bodies {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
            if self.in_body {
                self.bodies.push((frame.to_vec(), frame.is_lent()));
                ctx.push_slices(&[b"[", &frame, b"]"]);
                ctx.set_terminator("\n").unwrap();
                self.in_body = false;
            } else if let Some(n) = frame.strip_prefix(b"len ") {
                let n: u64 = std::str::from_utf8(n).unwrap().parse().unwrap();
                ctx.set_terminator(n).unwrap();
                self.in_body = true;
            }
        }
    }
    let long = "z".repeat(crate::outbox::DEFAULT_COALESCE_BELOW);
    let input = format!("len 3\nabclen 2\nxylen {}\n{long}", long.len());
    let mut h = Harness::new(Bodies::default());
    h.send(&input);
    let got: Vec<(&[u8], bool)> = h
        .protocol()
        .bodies
        .iter()
        .map(|(b, l)| (&b[..], *l))
        .collect();
    assert_eq!(
        got,
        [(&b"abc"[..], true), (b"xy", true), (long.as_bytes(), false)],
        "short counts lent, a long one shared"
    );
    let t = Replay::new(input).assert_invariant(Bodies::default);
    assert_eq!(t.output, format!("[abc][xy][{long}]"));
}

#[test]
fn an_overridden_collect_incoming_data_sees_every_byte_of_lent_frames_too() {
    // A streaming protocol: it counts what it is given and collects nothing itself.
    #[derive(Default)]
    struct Streaming {
        data: Vec<u8>,
        frames: Vec<usize>,
    }
    impl Protocol for Streaming {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn collect_incoming_data(&mut self, _: &mut Context<'_>, data: Frame<'_>) {
            assert!(!data.is_empty(), "never an empty piece");
            self.data.extend_from_slice(&data);
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
            assert!(frame.is_empty(), "nothing was collected: {frame:?}");
            self.frames.push(self.data.len());
            ctx.push(format!("{}\n", self.data.len()));
        }
    }
    let t = Replay::new("one\ntwo\n\nthree\n").assert_invariant(Streaming::default);
    assert_eq!(t.output, "3\n6\n6\n11\n");
}

#[test]
fn a_lent_frame_collected_while_input_pauses_is_kept_until_delivered() {
    // Pausing in `collect_incoming_data` leaves the terminator owed past the lend: the frame
    // must be copied out of the buffer, not lost with it.
    struct PauseEach(Vec<Vec<u8>>);
    impl Protocol for PauseEach {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
            ctx.collect(data);
            ctx.pause_reading();
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, frame: Frame<'_>) {
            self.0.push(frame.to_vec());
        }
    }
    let mut h = Harness::new(PauseEach(Vec::new()));
    h.send("alpha\nbeta\n");
    assert!(h.protocol().0.is_empty(), "paused before the terminator");
    h.with_context(|_, ctx| ctx.resume_reading());
    assert_eq!(h.protocol().0, [&b"alpha"[..]]);
    h.with_context(|_, ctx| ctx.resume_reading());
    assert_eq!(h.protocol().0, [&b"alpha"[..], b"beta"]);
}

#[test]
fn bytes_collected_from_elsewhere_are_copied_not_taken_for_the_lent_frame() {
    // Collecting a lent slice that is not the frame being lent (here a prefix of it, then a
    // constant) must collect those bytes, not the frame's.
    struct Rewrite(Vec<Vec<u8>>);
    impl Protocol for Rewrite {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
            ctx.collect(Frame::lent(&data[..1]));
            ctx.collect(Frame::lent(b"!"));
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, frame: Frame<'_>) {
            self.0.push(frame.to_vec());
        }
    }
    let mut h = Harness::new(Rewrite(Vec::new()));
    h.send("abc\nxyz\n");
    assert_eq!(h.protocol().0, [&b"a!"[..], b"x!"]);
}

#[test]
fn a_lent_frame_collected_again_in_found_terminator_joins_the_next_frame() {
    // Continuation lines: a line ending in `\` is collected again, to prefix the next one. The
    // collector must copy it before the next frame is lent.
    struct Continued(Vec<Vec<u8>>);
    impl Protocol for Continued {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
            if line.ends_with(b"\\") {
                ctx.collect(line);
            } else {
                self.0.push(line.to_vec());
            }
        }
    }
    let cases: [(&str, &[&str]); 3] = [
        ("a\\\ncd\nef\n", &["a\\cd", "ef"]),
        ("ab\\\ncd\n", &["ab\\cd"]),
        ("ab\\\nc\\\nd\n", &["ab\\c\\d"]),
    ];
    for (input, lines) in cases {
        let expected: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        let mut whole = Harness::new(Continued(Vec::new()));
        whole.send(input);
        assert_eq!(whole.protocol().0, expected, "{input:?} in one read");
        let mut bytewise = Harness::new(Continued(Vec::new()));
        for b in input.bytes() {
            bytewise.send([b]);
        }
        assert_eq!(bytewise.protocol().0, expected, "{input:?} byte by byte");
    }
}

#[test]
fn a_line_limit_lowered_in_collect_incoming_data_applies_to_the_lent_frame() {
    struct Lower;
    impl Protocol for Lower {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
            ctx.collect(data);
            ctx.set_max_frame(2);
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
            ctx.push(line);
        }
    }
    let mut h = Harness::new(Lower);
    h.send("abcdef\n");
    assert_eq!(
        h.chat().close_reason(),
        Some(&CloseReason::Error(
            PeerError::FrameTooLong { limit: 2 }.into()
        )),
        "as when the line arrives in pieces"
    );
    assert!(h.take_output().is_empty());
}

#[test]
fn a_lent_frame_kept_outlives_the_buffer_it_was_lent_from() {
    struct Keep(Vec<Bytes>);
    impl Protocol for Keep {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, frame: Frame<'_>) {
            assert!(frame.is_lent());
            self.0.push(frame.into_bytes());
        }
    }
    let mut h = Harness::new(Keep(Vec::new()));
    h.send("first\nsecond\n");
    h.send("third\n");
    assert_eq!(h.protocol().0, ["first", "second", "third"]);
}

/// On `STARTTLS`, takes the bytes after it for the new stack and stops reading, from
/// `found_terminator` or (`in_collect`) from `collect_incoming_data`.
struct Upgrader {
    in_collect: bool,
    lines: Vec<Vec<u8>>,
    handed_over: Option<Bytes>,
}

impl Upgrader {
    fn new(in_collect: bool) -> Self {
        Self {
            in_collect,
            lines: Vec::new(),
            handed_over: None,
        }
    }

    fn line(&mut self, ctx: &mut Context<'_>, line: &[u8]) {
        self.lines.push(line.to_vec());
        if line == b"STARTTLS" {
            self.handed_over = Some(ctx.take_unprocessed());
            assert!(ctx.take_unprocessed().is_empty(), "taken once");
            ctx.pause_reading();
        }
    }
}

impl Protocol for Upgrader {
    fn first_terminator(&self) -> Terminator {
        "\r\n".into()
    }

    fn collect_incoming_data(&mut self, ctx: &mut Context<'_>, data: Frame<'_>) {
        if self.in_collect {
            self.line(ctx, &data);
        } else {
            ctx.collect(data);
        }
    }

    fn found_terminator(&mut self, ctx: &mut Context<'_>, frame: Frame<'_>) {
        if !self.in_collect {
            self.line(ctx, &frame);
        }
    }
}

#[test]
fn take_unprocessed_in_a_lent_frame_hands_over_exactly_the_bytes_after_it() {
    for in_collect in [false, true] {
        // The lines are lent either way: handed over from either callback.
        let mut h = Harness::new(Upgrader::new(in_collect));
        h.send("EHLO x\r\nSTARTTLS\r\n\x16\x03\x01hello\r\nmore\r\n");
        let p = h.protocol();
        assert_eq!(
            p.lines,
            [&b"EHLO x"[..], b"STARTTLS"],
            "in_collect {in_collect}"
        );
        assert_eq!(
            p.handed_over.as_deref(),
            Some(&b"\x16\x03\x01hello\r\nmore\r\n"[..]),
            "in_collect {in_collect}"
        );
        assert_eq!(
            h.chat().core.framer.unprocessed_len(),
            0,
            "nothing left behind: in_collect {in_collect}"
        );
        // The connection goes on framing what comes after the upgrade.
        h.with_context(|_, ctx| ctx.resume_reading());
        h.send("next\r\n");
        assert_eq!(
            h.protocol().lines.last().map(Vec::as_slice),
            Some(&b"next"[..])
        );
    }
}

#[test]
fn the_end_of_input_reaches_a_protocol_taking_lent_frames() {
    // Every frame lent and the buffer empty, yet the end of the stream is still to report.
    struct Lines(Vec<Vec<u8>>, Option<u64>);
    impl Protocol for Lines {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, _: &mut Context<'_>, frame: Frame<'_>) {
            assert!(frame.is_lent());
            self.0.push(frame.to_vec());
        }
        fn peer_closed(&mut self, ctx: &mut Context<'_>, unterminated: u64) {
            self.1 = Some(unterminated);
            ctx.close_when_done();
        }
    }
    let mut h = Harness::new(Lines(Vec::new(), None));
    h.send("a\nb\n").send_eof();
    assert_eq!(h.protocol().0, [&b"a"[..], b"b"]);
    assert_eq!(
        h.protocol().1,
        Some(0),
        "peer_closed called once the lines are in"
    );
    assert!(h.is_closed());
}

/// Echoes lines, with the default reaction to deadlines.
struct Echo;

impl Protocol for Echo {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        ctx.push_slices(&[&line, b"\n"]);
    }
}

/// Echoes lines; does nothing on any timeout (so only the core can close on one).
struct Deaf;

impl Protocol for Deaf {
    fn first_terminator(&self) -> Terminator {
        "\n".into()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        ctx.push_slices(&[&line, b"\n"]);
    }
    fn timeout(&mut self, _: &mut Context<'_>, _: Timer) {}
}

fn slow_config() -> Config {
    Config::default()
        .idle_timeout(Some(Duration::from_secs(30)))
        .frame_timeout(Some(Duration::from_secs(10)))
}

#[test]
fn a_frame_trickled_in_a_byte_at_a_time_times_out_though_the_idle_timer_never_does() {
    let mut h = Harness::with_config(Echo, &slow_config());
    let mut sent = 0;
    while !h.is_closed() {
        h.send("x").advance(Duration::from_millis(500));
        sent += 1;
        assert!(sent < 100, "never closed");
    }
    assert_eq!(h.close_reason(), Some(&CloseReason::FrameTimedOut));
    assert_eq!(
        h.elapsed(),
        Duration::from_secs(10),
        "ten seconds after its first byte"
    );
}

#[test]
fn frames_that_each_finish_in_time_are_never_cut_however_long_the_connection() {
    let mut h = Harness::with_config(Echo, &slow_config());
    for line in 0..5 {
        // Each line takes 8 s (under the 10 s frame timeout), 40 s in all; and a read that
        // ends a line also brings the start of the next.
        h.send(format!("line{line}"));
        for _ in 0..8 {
            h.advance(Duration::from_secs(1));
        }
        h.send("\nnext-");
        assert_eq!(h.state(), State::Open, "line {line}");
    }
    assert!(h.take_output().starts_with(b"line0\nnext-line1\n"));
}

#[test]
fn the_frame_timeout_closes_even_a_protocol_that_ignores_it() {
    let mut h = Harness::with_config(Deaf, &slow_config());
    h.send("unfinished");
    h.advance(Duration::from_secs(9));
    assert_eq!(h.state(), State::Open);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.close_reason(), Some(&CloseReason::FrameTimedOut));
}

#[test]
fn the_frame_timeout_waits_while_backpressure_holds_input() {
    let config = slow_config().idle_timeout(None).water_marks(4, 8);
    let mut h = Harness::with_config(Echo, &config);
    h.set_peer_reading(false);
    // The echo fills the outbox: reading and delivery stop with a frame unfinished.
    h.send("0123456789\npartial");
    h.advance(Duration::from_secs(20));
    assert_eq!(h.state(), State::Open, "not the peer's delay");
    h.set_peer_reading(true);
    h.advance(Duration::from_secs(9));
    assert_eq!(h.state(), State::Open, "timed from when delivery resumed");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.close_reason(), Some(&CloseReason::FrameTimedOut));
}

/// Found by the chat fuzz target: the last output a producer that has given all it had, the
/// connection closing. The poll that finds the producer spent must end the connection; before,
/// it stayed `Closing` with nothing to write, until the peer closed or a timer fired.
#[test]
fn a_closing_connection_ends_when_its_last_producer_runs_out() {
    struct Tail {
        closed: Arc<Mutex<Vec<String>>>,
    }
    impl Protocol for Tail {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, _: Frame<'_>) {
            // Four chunks: the whole first batch of `transmit_with`, so the producer is pulled
            // again only after they are written.
            ctx.push_producer(SimpleProducer::new(vec![b'x'; 4], 1));
            ctx.close_when_done();
        }
        fn closed(&mut self, reason: &CloseReason) {
            self.closed.lock().unwrap().push(reason.to_string());
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let now = Instant::now();
    let mut chat = Chat::new(Tail {
        closed: log.clone(),
    })
    .unwrap();
    chat.handle_connected(now);
    chat.handle_read(now, b"go\n");
    let mut written = Vec::new();
    while let Some(n) = chat.transmit_with(|slices| {
        slices.iter().for_each(|s| written.extend_from_slice(s));
        slices.iter().map(|s| s.len()).sum::<usize>()
    }) {
        chat.handle_written(n);
    }
    assert_eq!(written, b"xxxx");
    assert_eq!(chat.state(), State::Closed);
    assert_eq!(chat.close_reason(), Some(&CloseReason::Done));
    assert_eq!(log.lock().unwrap().len(), 1, "closed() once");

    // The same through the harness, whose writes offer 64 slices.
    let mut h = Harness::new(Tail {
        closed: Arc::new(Mutex::new(Vec::new())),
    });
    h.send("go\n");
    assert_eq!(h.take_output(), "xxxx");
    assert_eq!(h.state(), State::Closed);
}

/// Found by the chat fuzz target: a producer refused at the hard limit must close the
/// connection, as a refused push does, not vanish without a word.
#[test]
fn a_producer_past_the_hard_limit_closes_the_connection() {
    struct Producers;
    impl Protocol for Producers {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, _: Frame<'_>) {
            for _ in 0..3 {
                ctx.push_producer(SimpleProducer::new(Bytes::from_static(b"p"), 1));
            }
        }
    }
    let config = Config::default().outbox_limit(2 * crate::outbox::ITEM_OVERHEAD);
    let mut h = Harness::with_config(Producers, &config);
    h.set_peer_reading(false);
    h.send("go\n");
    assert_eq!(
        h.close_reason(),
        Some(&CloseReason::Error(Error::OutboxFull {
            limit: 2 * crate::outbox::ITEM_OVERHEAD
        }))
    );
}

#[test]
fn starttls_behind_more_than_64_kib_of_output_is_the_protocols_misuse() {
    struct Late;
    impl Protocol for Late {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, _: Frame<'_>) {
            ctx.push(vec![b'x'; 70_000]);
            ctx.start_tls();
        }
    }
    let mut h = Harness::new(Late);
    h.set_peer_reading(false);
    h.send("STARTTLS\n");
    assert_eq!(
        h.close_reason(),
        Some(&CloseReason::Error(
            Misuse::StartTlsBehindOutput { queued: 70_000 }.into()
        ))
    );
}

#[test]
fn starttls_holds_input_until_the_driver_switches() {
    let (p, l) = Script::with_log();
    let mut h = Harness::new(StartTlsOnce(p));
    h.take_output();
    h.send("starttls\nnot this\n");
    assert!(
        h.chat().wants_tls(),
        "the reply is written: the switch is due"
    );
    h.send("nor this\n");
    assert!(!log(&l).iter().any(|e| e.contains("this")), "{:?}", log(&l));
    let now = h.now();
    h.chat_mut().handle_tls_started(now);
    h.send("inside\n");
    assert!(
        log(&l).contains(&"frame inside".to_string()),
        "{:?}",
        log(&l)
    );
}

/// A `Script` that switches to TLS on `starttls`.
struct StartTlsOnce(Script);

impl Protocol for StartTlsOnce {
    fn first_terminator(&self) -> Terminator {
        self.0.first_terminator()
    }
    fn found_terminator(&mut self, ctx: &mut Context<'_>, line: Frame<'_>) {
        if line == "starttls" {
            ctx.push("220 go ahead\n");
            ctx.start_tls();
            return;
        }
        self.0.found_terminator(ctx, line);
    }
}

#[test]
fn starttls_behind_a_producer_is_refused_as_misuse() {
    struct Streaming;
    impl Protocol for Streaming {
        fn first_terminator(&self) -> Terminator {
            "\n".into()
        }
        fn found_terminator(&mut self, ctx: &mut Context<'_>, _: Frame<'_>) {
            ctx.push_producer(crate::producer::SimpleProducer::new(Bytes::from("body"), 2));
            ctx.push("220 go ahead\n");
            ctx.start_tls();
        }
    }
    let mut h = Harness::new(Streaming);
    h.set_peer_reading(false);
    h.send("STARTTLS\n");
    assert!(
        matches!(
            h.close_reason(),
            Some(CloseReason::Error(Error::Misuse(
                Misuse::StartTlsBehindOutput { .. }
            )))
        ),
        "{:?}",
        h.close_reason()
    );
}

#[test]
fn a_graceful_close_while_tls_is_requested_still_switches_then_flushes() {
    let (p, _) = Script::with_log();
    let mut h = Harness::new(StartTlsOnce(p));
    h.take_output();
    h.set_peer_reading(false);
    h.send("starttls\n");
    h.with_context(|_, ctx| {
        ctx.push("after the switch\n");
        ctx.close_when_done();
    });
    assert!(!h.chat().wants_tls(), "the reply is not written yet");
    h.set_peer_reading(true);
    assert_eq!(
        h.take_output(),
        "220 go ahead\n",
        "only the reply before the switch"
    );
    assert!(h.chat().wants_tls(), "closing does not cancel the switch");
    let now = h.now();
    h.chat_mut().handle_tls_started(now);
    h.set_peer_reading(false);
    h.set_peer_reading(true);
    assert_eq!(h.take_output(), "after the switch\n");
    assert_eq!(h.close_reason(), Some(&CloseReason::Done));
}

#[test]
fn into_parts_lifts_a_barrier_left_by_a_switch_that_will_not_happen() {
    let (p, _) = Script::with_log();
    let mut h = Harness::new(StartTlsOnce(p));
    h.take_output();
    h.set_peer_reading(false);
    h.send("starttls\n");
    h.with_context(|_, ctx| ctx.push("more\n"));
    let chat = std::mem::replace(
        h.chat_mut(),
        Chat::new(StartTlsOnce(Script::with_log().0)).unwrap(),
    );
    let mut parts = chat.into_parts();
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    let n = parts.outbox.poll_slices(&mut slices);
    let offered: usize = slices[..n].iter().map(|s| s.len()).sum();
    assert_eq!(
        offered,
        "220 go ahead\nmore\n".len(),
        "everything is offered again"
    );
}
