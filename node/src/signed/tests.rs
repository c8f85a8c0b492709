use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    n: u64,
    text: String,
}

impl Kind for Note {
    const TAG: &'static str = "degroup/test-note/v1";
    const MAX_SIZE: usize = 4096;
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

#[test]
fn seal_then_open() -> Result<(), EnvelopeError> {
    let note = Note {
        n: 7,
        text: "hello".into(),
    };
    let bytes = Envelope::seal_kind(&key(1), &note)?.to_bytes();
    let opened = Envelope::open::<Note>(&bytes)?;
    assert_eq!(opened.value, note);
    assert_eq!(opened.signer, key(1).verifying_key());
    Ok(())
}

#[test]
fn rejects_oversize_trailing_and_wrong_tag() -> Result<(), EnvelopeError> {
    let note = Note {
        n: 1,
        text: "x".repeat(5000),
    };
    assert!(matches!(
        Envelope::seal_kind(&key(1), &note),
        Err(EnvelopeError::TooLarge { .. })
    ));
    let small = Note {
        n: 1,
        text: "x".into(),
    };
    let mut bytes = Envelope::seal_kind(&key(1), &small)?.to_bytes();
    bytes.push(0);
    assert_eq!(
        Envelope::open::<Note>(&bytes).err(),
        Some(EnvelopeError::Trailing(1))
    );
    let other = Envelope::seal(
        &key(1),
        "degroup/other/v1",
        postcard::to_stdvec(&small).unwrap_or_default(),
    );
    assert!(matches!(
        Envelope::open::<Note>(&other.to_bytes()),
        Err(EnvelopeError::WrongTag { .. })
    ));
    // Trailing bytes inside the signed payload are refused too.
    let mut payload = postcard::to_stdvec(&small).unwrap_or_default();
    payload.push(9);
    let padded = Envelope::seal(&key(1), Note::TAG, payload);
    assert_eq!(
        Envelope::open::<Note>(&padded.to_bytes()).err(),
        Some(EnvelopeError::Trailing(1))
    );
    Ok(())
}

proptest! {
    #[test]
    fn flipping_any_byte_breaks_it(n in any::<u64>(), text in ".{0,40}", idx in any::<prop::sample::Index>(), bit in 0u8..8) {
        let env = Envelope::seal_kind(&key(3), &Note { n, text }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bytes = env.to_bytes();
        let i = idx.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(Envelope::open::<Note>(&bytes).is_err());
    }

    #[test]
    fn changing_tag_or_signer_breaks_it(n in any::<u64>(), seed in 2u8..255) {
        let env = Envelope::seal_kind(&key(1), &Note { n, text: String::new() }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut retagged = env.clone();
        retagged.tag = "degroup/test-notf/v1".into();
        prop_assert!(retagged.verify("degroup/test-notf/v1").is_err());
        let mut resigned = env.clone();
        resigned.signer = key(seed).verifying_key().to_bytes();
        prop_assert!(resigned.verify(Note::TAG).is_err());
        prop_assert!(env.verify(Note::TAG).is_ok());
    }

    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Envelope::open::<Note>(&bytes);
    }
}
