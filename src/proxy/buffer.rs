//! Request-body buffering (`--request-buffering`), like nginx's
//! `proxy_request_buffering on`: the whole body is read from the client
//! before the request goes upstream, so a slow upload holds a temporary
//! file, never an app stream or worker. The first `memory` bytes stay in
//! memory; the rest goes to an anonymous temporary file (already unlinked,
//! so nothing is left behind even on a crash).

use std::io::SeekFrom;
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::client::BoxError;

/// A fully received request body.
pub(crate) struct Buffered {
    /// Its length.
    pub(crate) len: u64,
    memory: Vec<Bytes>,
    file: Option<tokio::fs::File>,
}

/// Reads `body` to its end. Errors are the body's own (its
/// [`super::body::BodyFault`] says whose fault) or the temporary file's.
pub(crate) async fn buffer<B>(
    body: B,
    memory: usize,
    dir: Option<&Path>,
) -> Result<Buffered, BoxError>
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    let mut body = body;
    let mut out = Buffered {
        len: 0,
        memory: Vec::new(),
        file: None,
    };
    let mut in_memory = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers are not forwarded by a buffered request
        };
        out.len += data.len() as u64;
        if out.file.is_none() && in_memory + data.len() <= memory {
            in_memory += data.len();
            out.memory.push(data);
            continue;
        }
        if out.file.is_none() {
            let dir = dir
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir);
            let f = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
                .await
                .map_err(|e| Box::new(e) as BoxError)??;
            out.file = Some(tokio::fs::File::from_std(f));
        }
        if let Some(f) = out.file.as_mut() {
            f.write_all(&data).await?;
        }
    }
    if let Some(f) = out.file.as_mut() {
        f.flush().await?;
        f.seek(SeekFrom::Start(0)).await?;
    }
    Ok(out)
}

impl Buffered {
    /// The body to send upstream: the memory part, then the file.
    pub(crate) fn into_body(self) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError> {
        let mem = futures_util::stream::iter(self.memory.into_iter().map(Ok::<_, BoxError>));
        let file = futures_util::stream::iter(self.file).flat_map(|f| {
            tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024)
                .map(|r| r.map_err(|e| Box::new(e) as BoxError))
        });
        let stream = mem.chain(file).map(|r| r.map(Frame::data));
        let len = self.len;
        SizedBody {
            inner: StreamBody::new(stream),
            len,
        }
        .boxed_unsync()
    }
}

/// A body with an exact size hint (the client then knows its length).
struct SizedBody<B> {
    inner: B,
    len: u64,
}

impl<B: HttpBody + Unpin> HttpBody for SizedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.len == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len)
    }
}
