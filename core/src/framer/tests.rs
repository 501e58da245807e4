use super::search::find_byte;
use super::*;

/// Feeds `chunks`, pulling events after each, then EOF; returns every event.
fn events(framer: &mut Framer, chunks: &[&[u8]]) -> Vec<Event> {
    let mut out = Vec::new();
    for chunk in chunks {
        framer.feed(chunk).unwrap();
        while let Some(ev) = framer.poll_event().unwrap() {
            out.push(ev);
        }
    }
    out
}

fn drain(framer: &mut Framer) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = framer.poll_event().unwrap() {
        out.push(ev);
    }
    out
}

fn data(s: &str) -> Event {
    Event::Data(Bytes::copy_from_slice(s.as_bytes()))
}

const T: Event = Event::Terminator;

#[test]
fn delimiter_split_across_reads_is_held_back() {
    let mut f = Framer::new("\r\n").unwrap();
    let ev = events(&mut f, &[b"hello\r", b"\nworld\r\n"]);
    assert_eq!(ev, vec![data("hello"), T, data("world"), T]);

    // Python's example: the lone "\r" is held back, then turns out not to be a terminator.
    let mut f = Framer::new("\r\n").unwrap();
    let ev = events(&mut f, &[b"hello\r", b"world\r\n"]);
    assert_eq!(ev, vec![data("hello"), data("\rworld"), T]);
}

#[test]
fn overlapping_prefix_is_held_back_correctly() {
    // Terminator "aab", reads "aaa" | "ab": frame "aa" (Python agrees).
    let mut f = Framer::new("aab").unwrap();
    let ev = events(&mut f, &[b"aaa", b"ab"]);
    assert_eq!(ev, vec![data("a"), data("a"), T]);
}

#[test]
fn four_byte_delimiter_one_byte_per_read() {
    let input = b"MAIL\r\n.\r\nnext\r\n.\r\n";
    let mut f = Framer::new("\r\n.\r\n").unwrap();
    let mut frames = Vec::new();
    for b in input {
        f.feed(&[*b]).unwrap();
        while let Some(frame) = f.poll_frame().unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames, vec![Bytes::from("MAIL"), Bytes::from("next")]);
}

#[test]
fn empty_frames_fire_without_data() {
    let mut f = Framer::new("\n").unwrap();
    let ev = events(&mut f, &[b"a\n\n\nb\n"]);
    assert_eq!(ev, vec![data("a"), T, T, T, data("b"), T]);
}

#[test]
fn frames_within_one_read_are_slices_of_the_read_buffer() {
    // Frames of an eighth of the buffer or more are split off it, not copied.
    let (first, second) = ("f".repeat(600), "s".repeat(700));
    let mut f = Framer::new("\r\n").unwrap();
    f.feed(format!("{first}\r\n{second}\r\n").as_bytes())
        .unwrap();
    let a = f.poll_frame().unwrap().unwrap();
    let b = f.poll_frame().unwrap().unwrap();
    assert_eq!((&a[..], &b[..]), (first.as_bytes(), second.as_bytes()));
    // Same allocation, consecutive: no copy was made.
    assert_eq!(a.as_ptr() as usize + a.len() + 2, b.as_ptr() as usize);

    // A frame spanning two reads is still one slice: it stayed in the buffer.
    let mut f = Framer::new("\n").unwrap();
    f.feed(b"par").unwrap();
    assert_eq!(f.poll_frame().unwrap(), None);
    f.feed(b"tial\nx").unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("partial")));
}

#[test]
fn count_counts_down_across_reads_then_is_satisfied() {
    // Python: set_terminator(10), reads abc|def|ghi|jklmn -> abc,def,ghi,j, found, then klmn.
    let mut f = Framer::new(10u64).unwrap();
    let ev = events(&mut f, &[b"abc", b"def", b"ghi", b"jklmn"]);
    assert_eq!(
        ev,
        vec![
            data("abc"),
            data("def"),
            data("ghi"),
            data("j"),
            T,
            data("klmn")
        ]
    );
    assert_eq!(f.terminator(), Terminator::Count(0));
}

#[test]
fn count_zero_ends_the_frame_at_once_and_a_spent_count_never_fires() {
    // Unlike Python's `set_terminator(0)`, an explicit zero count is an empty frame...
    let mut f = Framer::new(0u64).unwrap();
    assert_eq!(f.poll_event(), Ok(Some(T)));
    // ...after which the count is spent: everything is data, nothing fires (as in Python).
    let ev = events(&mut f, &[b"abc", b"def"]);
    assert_eq!(ev, vec![data("abc"), data("def")]);
    f.feed_eof();
    assert_eq!(drain(&mut f), vec![Event::End { unterminated: 6 }]);

    // Set between frames, it gives an empty whole frame too.
    let mut f = Framer::new("\n").unwrap();
    f.feed(b"len 0\nnext\n").unwrap();
    assert_eq!(f.poll_frame(), Ok(Some(Bytes::from("len 0"))));
    f.set_terminator(0u64).unwrap();
    assert_eq!(f.poll_frame(), Ok(Some(Bytes::new())));
    assert_eq!(f.poll_frame(), Ok(None), "spent: no second empty frame");
    f.set_terminator("\n").unwrap();
    assert_eq!(f.poll_frame(), Ok(Some(Bytes::from("next"))));
}

#[test]
fn switching_terminator_applies_to_bytes_already_buffered() {
    // Python: b'4\nABCDrest\n' with header -> count -> line in one read.
    let mut f = Framer::new("\n").unwrap();
    f.feed(b"4\nABCDrest\n").unwrap();
    assert_eq!(f.poll_event().unwrap(), Some(data("4")));
    assert_eq!(f.poll_event().unwrap(), Some(T));
    f.set_terminator(4u64).unwrap();
    assert_eq!(f.poll_event().unwrap(), Some(data("ABCD")));
    assert_eq!(f.poll_event().unwrap(), Some(T));
    f.set_terminator("\n").unwrap();
    assert_eq!(drain(&mut f), vec![data("rest"), T]);
}

#[test]
fn smtp_data_switch() {
    let mut f = Framer::new("\r\n").unwrap();
    f.feed(b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        .unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("DATA")));
    f.set_terminator("\r\n.\r\n").unwrap();
    assert_eq!(
        f.poll_frame().unwrap(),
        Some(Bytes::from("Subject: x\r\n\r\nbody"))
    );
    f.set_terminator("\r\n").unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("QUIT")));
    assert_eq!(f.poll_frame().unwrap(), None);
}

#[test]
fn terminator_change_after_data_does_not_cancel_a_found_terminator() {
    // Python computes the match before calling collect_incoming_data; so do we.
    let mut f = Framer::new("\n").unwrap();
    f.feed(b"ab\ncd").unwrap();
    assert_eq!(f.poll_event().unwrap(), Some(data("ab")));
    f.set_terminator(1u64).unwrap();
    assert_eq!(f.poll_event().unwrap(), Some(T));
    assert_eq!(drain(&mut f), vec![data("c"), T, data("d")]);
}

#[test]
fn eof_delivers_partial_frame_and_held_back_bytes() {
    let mut f = Framer::new("\r\n").unwrap();
    let ev = events(&mut f, &[b"line\r\npart\r"]);
    assert_eq!(ev, vec![data("line"), T, data("part")]);
    f.feed_eof();
    assert_eq!(
        drain(&mut f),
        vec![data("\r"), Event::End { unterminated: 5 }]
    );
    assert!(f.is_finished());
    assert_eq!(f.poll_event().unwrap(), None);
    assert_eq!(f.feed(b"late"), Err(Misuse::FeedAfterEof));
    assert_eq!(f.read_with(10, |_| ()), Err(Misuse::FeedAfterEof));
}

#[test]
fn eof_terminator_fires_once_at_end() {
    let mut f = Framer::new(Terminator::Eof).unwrap();
    let ev = events(&mut f, &[b"all ", b"of it"]);
    assert_eq!(ev, vec![data("all "), data("of it")]);
    f.feed_eof();
    assert_eq!(drain(&mut f), vec![T, Event::End { unterminated: 0 }]);

    // An empty stream is an empty frame.
    let mut f = Framer::new(Terminator::Eof).unwrap();
    f.feed_eof();
    assert_eq!(drain(&mut f), vec![T, Event::End { unterminated: 0 }]);

    // Setting Eof again inside found_terminator does not fire it twice.
    let mut f = Framer::new(Terminator::Eof).unwrap();
    f.feed_eof();
    assert_eq!(f.poll_event().unwrap(), Some(T));
    f.set_terminator(Terminator::Eof).unwrap();
    assert_eq!(drain(&mut f), vec![Event::End { unterminated: 0 }]);
}

#[test]
fn eof_in_count_reports_unterminated_bytes() {
    let mut f = Framer::new(10u64).unwrap();
    let _ = events(&mut f, &[b"abc"]);
    f.feed_eof();
    assert_eq!(drain(&mut f), vec![Event::End { unterminated: 3 }]);
}

#[test]
fn over_long_fails_after_exactly_max_bytes_whatever_the_chunking() {
    let input = b"0123456789ABC\nok\n";
    for chunk in [1, 3, 5, input.len()] {
        let mut f = Framer::new("\n").unwrap().with_max_frame(10);
        let mut delivered = 0;
        let mut err = None;
        'feed: for piece in input.chunks(chunk) {
            f.feed(piece).unwrap();
            loop {
                match f.poll_event() {
                    Ok(Some(Event::Data(d))) => delivered += d.len(),
                    Ok(Some(_)) => panic!("no frame may complete"),
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e);
                        break 'feed;
                    }
                }
            }
        }
        assert_eq!(delivered, 10, "chunk size {chunk}");
        assert_eq!(err, Some(PeerError::FrameTooLong { limit: 10 }));
        assert!(f.is_failed());
        // Stays failed: later input is ignored and the error repeats.
        f.feed(b"more\n").unwrap();
        assert_eq!(f.poll_event(), Err(PeerError::FrameTooLong { limit: 10 }));
        assert_eq!(f.unprocessed_len(), 0);
    }
}

#[test]
fn frame_of_exactly_max_is_accepted() {
    let mut f = Framer::new("\r\n").unwrap().with_max_frame(4);
    f.feed(b"abcd\r\nabcde\r\n").unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("abcd")));
    assert_eq!(f.poll_frame(), Err(PeerError::FrameTooLong { limit: 4 }));
}

#[test]
fn skip_policy_discards_the_frame_and_carries_on() {
    let mut f = Framer::new("\r\n")
        .unwrap()
        .with_max_frame(4)
        .with_over_long_policy(OverLongPolicy::Skip);
    f.feed(b"ok\r\nway too long").unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("ok")));
    assert_eq!(f.poll_frame(), Err(PeerError::FrameTooLong { limit: 4 }));
    assert_eq!(f.poll_frame(), Ok(None));
    f.feed(b" still\r").unwrap();
    assert_eq!(f.poll_frame(), Ok(None));
    assert!(f.unprocessed_len() <= 1, "discarded bytes are not kept");
    f.feed(b"\nnext\r\n").unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("next")));

    // Event API: max bytes of the bad frame, the error once, then the next frame.
    let mut f = Framer::new("\n")
        .unwrap()
        .with_max_frame(3)
        .with_over_long_policy(OverLongPolicy::Skip);
    f.feed(b"abcdef\nxy\n").unwrap();
    assert_eq!(f.poll_event(), Ok(Some(data("abc"))));
    assert_eq!(f.poll_event(), Err(PeerError::FrameTooLong { limit: 3 }));
    assert_eq!(drain(&mut f), vec![data("xy"), T]);
}

#[test]
fn count_zero_ends_a_discarded_frame_without_discarding_forever() {
    let mut f = Framer::new("\n")
        .unwrap()
        .with_max_frame(3)
        .with_over_long_policy(OverLongPolicy::Skip);
    f.feed(b"abcdef").unwrap();
    assert_eq!(f.poll_frame(), Err(PeerError::FrameTooLong { limit: 3 }));
    // The protocol ends the over-long frame itself: an empty frame, once. The bytes after it
    // are framed again, not dropped: under a line terminator they are already too long.
    f.set_terminator(0u64).unwrap();
    assert_eq!(f.poll_frame(), Ok(Some(Bytes::new())));
    assert_eq!(f.unprocessed_len(), 6);
    f.set_terminator("\n").unwrap();
    assert_eq!(f.poll_frame(), Err(PeerError::FrameTooLong { limit: 3 }));
    // And that discard ends at its line's end.
    f.feed(b"gh\nok\n").unwrap();
    assert_eq!(f.poll_frame(), Ok(Some(Bytes::from("ok"))));
    assert_eq!(f.poll_frame(), Ok(None));
}

#[test]
fn whole_frame_api_bounds_counts_and_reports_truncation() {
    // A count over its own bound is refused where it is set, and nothing changes.
    let mut f = Framer::new("\n").unwrap().with_max_counted_frame(10);
    assert_eq!(
        f.set_terminator(100u64),
        Err(Misuse::CountOverLimit {
            count: 100,
            limit: 10
        })
    );
    assert_eq!(f.terminator(), Terminator::from("\n"));
    assert_eq!(
        Framer::new(DEFAULT_MAX_COUNTED_FRAME + 1).map(|_| ()),
        Err(Misuse::CountOverLimit {
            count: DEFAULT_MAX_COUNTED_FRAME + 1,
            limit: DEFAULT_MAX_COUNTED_FRAME
        })
    );
    // The line limit does not apply to counts.
    let mut f = Framer::new(100u64).unwrap().with_max_frame(10);
    f.feed(&[b'x'; 100]).unwrap();
    assert_eq!(f.poll_frame().map(|b| b.map(|b| b.len())), Ok(Some(100)));

    let mut f = Framer::new(4u64).unwrap();
    f.feed(b"abcdef").unwrap();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("abcd")));
    assert_eq!(f.terminator(), Terminator::Count(0));
    f.set_terminator("\n").unwrap();
    assert_eq!(f.poll_frame().unwrap(), None);
    f.feed_eof();
    assert_eq!(
        f.poll_frame(),
        Err(PeerError::Truncated { unterminated: 2 })
    );
    assert_eq!(f.take_unprocessed(), Bytes::from("ef"));
    assert_eq!(f.poll_frame(), Ok(None));
    assert!(f.is_finished());

    let mut f = Framer::new(Terminator::Eof).unwrap();
    f.feed(b"body").unwrap();
    assert_eq!(f.poll_frame().unwrap(), None);
    f.feed_eof();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("body")));
    assert_eq!(f.poll_frame().unwrap(), None);

    // A clean end on a frame boundary is not an error.
    let mut f = Framer::new("\n").unwrap();
    f.feed(b"a\n").unwrap();
    f.feed_eof();
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("a")));
    assert_eq!(f.poll_frame().unwrap(), None);
}

#[test]
fn a_counted_frame_bound_lowered_after_the_count_was_set_fails_it() {
    let mut f = Framer::new(6u64).unwrap();
    f.feed(b"abcdefgh").unwrap();
    f.set_max_counted_frame(4);
    assert_eq!(f.poll_frame(), Err(PeerError::FrameTooLong { limit: 4 }));
    assert!(f.is_failed());
}

#[test]
fn take_buffered_hands_over_every_undelivered_byte() {
    let mut f = Framer::new("\r\n").unwrap();
    f.feed(b"STARTTLS\r\n\x16\x03\x01 tls bytes\r").unwrap();
    assert_eq!(f.poll_event().unwrap(), Some(data("STARTTLS")));
    assert_eq!(f.poll_event().unwrap(), Some(T));
    assert_eq!(
        f.take_unprocessed(),
        Bytes::from_static(b"\x16\x03\x01 tls bytes\r")
    );
    assert_eq!(f.unprocessed_len(), 0);
    assert_eq!(f.poll_event().unwrap(), None);
}

#[test]
fn empty_delimiter_is_refused_and_terminator_kept() {
    assert_eq!(Framer::new("").unwrap_err(), Misuse::EmptyDelimiter);
    let mut f = Framer::new("\n").unwrap();
    assert_eq!(f.set_terminator(""), Err(Misuse::EmptyDelimiter));
    assert_eq!(f.terminator(), Terminator::from("\n"));
}

#[test]
fn byte_by_byte_feeding_scans_each_byte_a_bounded_number_of_times() {
    const LEN: usize = 1 << 20;
    let line: Vec<u8> = (0..LEN).map(|i| b'a' + (i % 26) as u8).collect();
    for delim in ["\n", "\r\n", "\r\n.\r\n"] {
        // Whole-frame mode keeps the line buffered: a naive framer rescans it on every feed.
        let mut f = Framer::new(delim).unwrap().with_max_frame(2 * LEN);
        for b in &line {
            f.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(f.poll_frame().unwrap(), None);
            // Re-setting the same delimiter must not restart the scan.
            f.set_terminator(delim).unwrap();
        }
        f.feed(delim.as_bytes()).unwrap();
        assert_eq!(f.poll_frame().unwrap().map(|b| b.len()), Some(LEN));
        let bound = LEN * delim.len() + 2 * delim.len();
        assert!(
            f.search.scanned <= bound,
            "{delim:?}: scanned {} bytes for a {LEN}-byte line",
            f.search.scanned
        );
    }
}

#[test]
fn read_with_appends_in_place_and_releases_an_idle_buffer() {
    let mut f = Framer::new("\n").unwrap();
    let n = f
        .read_with(4096, |buf| {
            assert!(buf.capacity() >= 4096);
            buf.extend_from_slice(b"hi\n");
            3
        })
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("hi")));
    // A read that finds nothing with nothing buffered gives the memory back.
    f.read_with(4096, |_| 0).unwrap();
    assert_eq!(f.buf.capacity(), 0);
}

#[test]
fn a_count_beyond_4_gib_streams_in_bounded_memory() {
    let body: u64 = (4 << 30) + 7;
    // Streamed through events, a count may be as large as the caller allows.
    let mut f = Framer::new("\n").unwrap().with_max_counted_frame(u64::MAX);
    f.set_terminator(body).unwrap();
    let chunk = vec![b'z'; 64 << 10];
    let mut delivered = 0u64;
    // 64 MiB of the body: every byte comes straight out, nothing accumulates.
    for _ in 0..1024 {
        f.feed(&chunk).unwrap();
        while let Some(ev) = f.poll_event().unwrap() {
            match ev {
                Event::Data(d) => delivered += d.len() as u64,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(f.unprocessed_len(), 0);
    }
    assert_eq!(delivered, 64 << 20);
    assert_eq!(f.terminator(), Terminator::Count(body - delivered));
    // The whole-frame API refuses to buffer it instead.
    f.set_max_counted_frame(DEFAULT_MAX_COUNTED_FRAME);
    assert_eq!(
        f.poll_frame(),
        Err(PeerError::FrameTooLong {
            limit: DEFAULT_MAX_COUNTED_FRAME as usize
        })
    );
}

#[test]
fn borrowed_frames_reclaim_space_once_per_read_and_mix_with_other_calls() {
    let mut f = Framer::new("\r\n").unwrap();
    f.feed(b"one\r\ntwo\r\nthr").unwrap();
    assert_eq!(f.poll_frame_ref().unwrap(), Some(&b"one"[..]));
    assert_eq!(f.poll_frame_ref().unwrap(), Some(&b"two"[..]));
    assert_eq!(f.poll_frame_ref().unwrap(), None);
    assert_eq!(
        f.unprocessed_len(),
        3,
        "only the partial frame counts as buffered"
    );
    f.feed(b"ee\r\n5\r\nhello").unwrap();
    assert_eq!(f.consumed, 0, "feeding reclaims what was lent");
    assert_eq!(f.poll_frame_ref().unwrap(), Some(&b"three"[..]));
    assert_eq!(f.poll_frame().unwrap(), Some(Bytes::from("5")));
    f.set_terminator(5u64).unwrap();
    // Counted frames come through the slow path, lent from an owned frame.
    assert_eq!(f.poll_frame_ref().unwrap(), Some(&b"hello"[..]));
    assert_eq!(f.take_unprocessed(), Bytes::new());
    // Limits apply the same way.
    let mut f = Framer::new("\n").unwrap().with_max_frame(3);
    f.feed(b"abc\nabcd\n").unwrap();
    assert_eq!(f.poll_frame_ref().unwrap(), Some(&b"abc"[..]));
    assert_eq!(
        f.poll_frame_ref(),
        Err(PeerError::FrameTooLong { limit: 3 })
    );
}

#[test]
fn the_byte_search_finds_the_first_match_near_and_past_the_handover() {
    // The search changes searcher at NEAR bytes: every position around it, with a second match
    // further on that must not be reported instead.
    for len in [0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 300, 700] {
        for at in 0..len {
            let mut hay = vec![b'x'; len];
            hay[at] = b'\n';
            if at + 1 < len {
                hay[len - 1] = b'\n';
            }
            assert_eq!(find_byte(b'\n', &hay), Some(at), "len {len} at {at}");
        }
        assert_eq!(find_byte(b'\n', &vec![b'x'; len]), None, "len {len}");
    }
}

#[test]
fn small_frames_are_copied_out_so_a_kept_one_does_not_pin_the_read_buffer() {
    let mut f = Framer::new("\n").unwrap();
    let big = "b".repeat(1000);
    f.feed(format!("v\n{big}\nw\n").as_bytes()).unwrap();
    let small = f.poll_frame().unwrap().unwrap();
    let large = f.poll_frame().unwrap().unwrap();
    assert_eq!(small, "v");
    assert_eq!(large, big.as_str());
    // A copied frame owns an allocation of its own size: it alone refers to it.
    let small = small.try_into_mut().expect("a frame of its own");
    assert!(small.capacity() < 64, "capacity {}", small.capacity());
    // A large frame shares the read buffer, which still holds the rest.
    assert!(large.try_into_mut().is_err(), "split off the read buffer");
    assert_eq!(f.poll_frame().unwrap().unwrap(), "w");
}
