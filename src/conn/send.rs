//! The transmit side: control frames first, then WINDOW_UPDATEs (made as
//! they leave, so credit is given only when it can reach the peer), then
//! stream frames round-robin (one frame per stream per turn) so one large
//! body cannot starve others.

use bytes::Bytes;

use super::engine::Connection;
use super::stream::{Sched, SendState};
use crate::frame::{Data, Frame, StreamId, Trailers};

impl Connection {
    /// Puts `id` in the transmit queue it now belongs in, unless already
    /// queued. Round-robin: it goes to the back.
    pub(super) fn schedule(&mut self, id: StreamId) {
        if self.closed {
            return;
        }
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.sched.is_some() {
            return;
        }
        if let Some(which) = s.wants() {
            s.sched = Some(which);
            self.sched.push(which, id);
        }
    }

    /// The next frame to write to the transport, if any: queued control
    /// frames and heads first, then trailers and empty END_STREAM frames,
    /// then DATA round-robin across streams as the windows allow.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if let Some(f) = self.control.pop_front() {
            return Some(f);
        }
        if self.closed {
            return None;
        }
        if let Some(f) = self.poll_window_update() {
            return Some(f);
        }
        while let Some(id) = self.sched.pop(Sched::Free, &mut self.streams) {
            let Some(s) = self.streams.get_mut(id) else {
                continue;
            };
            let frame: Frame = match s.trailers.take() {
                Some(t) => Trailers::new(id, *t).into(),
                None => Data::new(id, Bytes::new(), true).into(),
            };
            s.send = SendState::Done;
            self.maybe_close(id);
            return Some(frame);
        }
        while self.conn_send.available() > 0 {
            let id = self.sched.pop(Sched::Ready, &mut self.streams)?;
            let max_frame = self.peer_limits.max_frame_size;
            let conn_avail = self.conn_send.available();
            let Some(s) = self.streams.get_mut(id) else {
                continue;
            };
            // "A sender never exceeds min(stream window, connection window)
            // and splits DATA at the peer's max_frame_size."
            let limit = s.send_window.available().min(conn_avail).min(max_frame) as usize;
            if limit == 0 || s.buffered == 0 {
                self.schedule(id);
                continue;
            }
            let data = s.take_chunk(limit);
            let n = data.len() as u32;
            s.send_window.consume(n);
            let end = s.buffered == 0 && s.send == SendState::Ending && s.trailers.is_none();
            if end {
                s.send = SendState::Done;
            }
            self.conn_send.consume(n);
            self.schedule(id);
            if end {
                self.maybe_close(id);
            }
            return Some(Data::new(id, data, end).into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use crate::conn::{Config, Connection, Event, Role};
    use crate::frame::{Frame, RequestHead, Settings, StreamId, WindowUpdate};

    fn ready_client(peer: Settings) -> (Connection, Instant) {
        let now = Instant::now();
        let mut c = Connection::new(Role::Client, Config::default(), now);
        assert!(matches!(c.poll_transmit(), Some(Frame::Settings(_))));
        c.handle_frame(peer.into(), now).unwrap();
        assert_eq!(c.poll_event(), Some(Event::Ready));
        (c, now)
    }

    fn head() -> RequestHead {
        RequestHead {
            method: "POST".into(),
            path: "/".into(),
            ..Default::default()
        }
    }

    #[test]
    fn round_robin_between_streams() {
        let (mut c, _) = ready_client(Settings {
            max_frame_size: Some(1024),
            ..Default::default()
        });
        let a = c.open_stream(head(), false).unwrap();
        let b = c.open_stream(head(), false).unwrap();
        c.send_data(a, Bytes::from(vec![b'a'; 4096]), true).unwrap();
        c.send_data(b, Bytes::from(vec![b'b'; 2048]), true).unwrap();
        let mut order = Vec::new();
        while let Some(f) = c.poll_transmit() {
            if let Frame::Data(d) = f {
                assert!(d.payload().len() <= 1024);
                order.push((d.stream_id().get(), d.is_end_stream()));
            }
        }
        assert_eq!(
            order,
            vec![
                (1, false),
                (3, false),
                (1, false),
                (3, true),
                (1, false),
                (1, true)
            ]
        );
    }

    #[test]
    fn blocked_on_connection_window_then_resumes() {
        let (mut c, now) = ready_client(Settings {
            initial_connection_window: Some(1000),
            ..Default::default()
        });
        let a = c.open_stream(head(), false).unwrap();
        c.send_data(a, Bytes::from(vec![0u8; 1500]), true).unwrap();
        assert!(matches!(c.poll_transmit(), Some(Frame::Request(_))));
        match c.poll_transmit() {
            Some(Frame::Data(d)) => assert_eq!(d.payload().len(), 1000),
            f => panic!("{f:?}"),
        }
        assert!(!c.has_pending_transmit());
        assert_eq!(c.poll_transmit(), None);
        assert_eq!(c.send_buffered(a), 500);
        assert_eq!(c.send_window(a), 0);
        c.handle_frame(WindowUpdate::new(StreamId::ZERO, 600).into(), now)
            .unwrap();
        assert!(c.has_pending_transmit());
        match c.poll_transmit() {
            Some(Frame::Data(d)) => {
                assert_eq!(d.payload().len(), 500);
                assert!(d.is_end_stream());
            }
            f => panic!("{f:?}"),
        }
        assert_eq!(c.send_window(a), 100);
    }

    #[test]
    fn stale_queue_entries_are_compacted() {
        let (mut c, _) = ready_client(Settings {
            initial_connection_window: Some(1),
            ..Default::default()
        });
        // Use up the 1-byte connection window so streams stay queued.
        let first = c.open_stream(head(), false).unwrap();
        c.send_data(first, Bytes::from_static(b"xx"), false)
            .unwrap();
        while c.poll_transmit().is_some() {}
        for _ in 0..1000 {
            if !c.can_open_stream() {
                break;
            }
            let id = c.open_stream(head(), false).unwrap();
            c.send_data(id, Bytes::from_static(b"x"), false).unwrap();
            c.reset_stream(id, crate::frame::Reason::CANCEL).unwrap();
        }
        // One live entry (`first`): at most 2 * 1 + 32 entries before compaction.
        assert!(c.sched.queued_len() <= 35, "{}", c.sched.queued_len());
    }
}
