//! Frames of the application protocols: one postcard value per direction of a stream.
//!
//! The writer sends the value and closes its side; the reader takes at most the protocol's cap
//! plus one byte, refuses anything larger and refuses trailing bytes. This is the framing
//! libp2p's request-response behaviour used with a postcard codec, so the bytes on the wire
//! are those of the earlier versions of each protocol.

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::signed::decode_exact;

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Reads one frame of at most `cap` bytes, up to the end of the stream, and decodes it.
pub(crate) async fn read<T, R>(io: &mut R, cap: usize) -> std::io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    io.take(limit).read_to_end(&mut buf).await?;
    if buf.len() > cap {
        return Err(invalid(format!("frame over its size cap of {cap} bytes")));
    }
    decode_exact(&buf).map_err(|e| invalid(e.to_string()))
}

/// Writes pre-encoded frame bytes and closes the writing side.
pub(crate) async fn write<W>(io: &mut W, bytes: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    io.write_all(bytes).await?;
    io.close().await
}

/// Encodes a value as frame bytes.
pub(crate) fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_and_trailing_bytes_are_refused() {
        let bytes = encode(&(7u32, "abc".to_owned())).unwrap_or_default();
        let mut ok = futures::io::Cursor::new(bytes.clone());
        let v: (u32, String) = read(&mut ok, 64).await.unwrap_or_default();
        assert_eq!(v, (7, "abc".to_owned()));
        let mut big = futures::io::Cursor::new(bytes.clone());
        assert!(read::<(u32, String), _>(&mut big, 2).await.is_err());
        let mut trailing = bytes;
        trailing.push(0);
        let mut t = futures::io::Cursor::new(trailing);
        assert!(read::<(u32, String), _>(&mut t, 64).await.is_err());
    }
}
