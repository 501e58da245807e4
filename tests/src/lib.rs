//! `asynchat-tests`: the conformance and fault suite every driver must pass.
//!
//! The scenarios ([`scenarios`]) are written once, generic over a [`Driver`]; each driver crate's
//! test file instantiates them all with [`conformance_suite!`], so the same test code runs on
//! every driver. A driver that cannot honour a scenario must say so in its test file, with the
//! reason, rather than leave it out silently.
//!
//! Every scenario talks to a real server over loopback sockets on 127.0.0.1 and ephemeral
//! ports (one over an unnamed Unix socket pair), bounds every blocking call with a timeout, and
//! stops its server when it ends.
#![forbid(unsafe_code)]

pub mod driver;
pub mod peer;
pub mod probe;
pub mod scenarios;
pub mod storms;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

pub use driver::{Driver, Mio, Server, Smol, TlsDriver, TokioCurrentThread, TokioMultiThread};

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests of this crate,
/// which depends on the core and the drivers alike.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// 127.0.0.1 with an ephemeral port.
pub const LOCALHOST: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// Instantiates every scenario as a `#[test]` for a driver type.
#[macro_export]
macro_rules! conformance_suite {
    ($driver:ty) => {
        $crate::conformance_suite!(@tests $driver;
            delimiter_split_across_writes,
            delimiters_one_byte_per_write,
            ten_thousand_pipelined_frames,
            count_across_reads_and_switch,
            eof_terminator,
            end_of_stream_right_behind_the_data,
            push_64_mib_intact,
            close_when_done_flushes_to_a_slow_reader,
            half_close_keeps_queued_output,
            half_close_after_a_burst_still_ends_the_stream,
            peer_reset_mid_write,
            connect_refused_is_a_typed_error,
            over_long_frame_closes_only_its_connection,
            idle_timeout_closes_only_the_idle_connection,
            flood_without_reading_is_bounded,
            udp_echo_1000_datagrams,
            handle_pushes_from_another_thread,
            handle_pushes_a_producer_then_closes_when_done,
            zero_and_large_counted_bodies,
            a_client_pushed_from_outside_its_protocol,
            requests_and_replies_through_the_helper,
            a_protocol_stops_its_own_server,
            shutdown_with_a_deadline_against_a_client_that_never_reads,
            a_second_shutdown_brings_the_deadline_forward,
            refused_and_failed_connections_are_counted,
            stop_accepting_keeps_the_open_connections,
            a_refused_connections_handle_never_reaches_the_next_one,
            serve_over_a_unix_socket,
            greeting_on_connect,
            graceful_close_with_unread_input_still_delivers_the_reply,
            unix_socket_runs_the_same_protocol,
            a_greedy_pipeliner_does_not_starve_a_fresh_client,
        );
    };
    (@tests $driver:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::scenarios::$name::<$driver>();
            }
        )*
    };
}
