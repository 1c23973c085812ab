use super::*;
use crate::bank::{Action, Thresholds};

fn settings(action: Action) -> BankSettings {
    BankSettings {
        action,
        thresholds: Thresholds::default(),
        labels: vec!["bank-label".into()],
        description: String::new(),
        enabled: true,
        min_quality: 50,
    }
}

fn pdq(fill: u8, flips: usize) -> HashValue {
    let mut bytes = [fill; 32];
    for i in 0..flips {
        bytes[i / 8] ^= 1 << (i % 8);
    }
    HashValue::from_bytes(Algorithm::Pdq, &bytes).unwrap()
}

fn name(text: &str) -> BankName {
    BankName::new(text).unwrap()
}

fn entry(hash: HashValue, id: &str) -> NewEntry {
    NewEntry::new(
        hash,
        id,
        vec!["entry-label".into(), "bank-label".into()],
        "gifct",
        "",
        0,
    )
    .unwrap()
}

/// The bridge photo of Meta's PDQ test data, encoded as it ships.
fn bridge_photo() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pdq/bridge-mods/aaa-orig.jpg"),
    )
    .unwrap()
}

/// An image as PNG bytes.
fn png(image: &image::RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

fn open(dir: &std::path::Path) -> Matcher {
    Matcher::open(MatcherConfig::new(dir)).unwrap()
}

/// A matcher whose one bank, TVEC (block), holds `image` added as `entry` says.
fn matcher_holding(image: &[u8], entry: &ImageEntry) -> (tempfile::TempDir, Matcher) {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher
        .create_bank(name("TVEC"), settings(Action::Block))
        .unwrap();
    matcher.add_image(&name("TVEC"), image, entry).unwrap();
    (dir, matcher)
}

#[test]
fn a_near_hash_matches_within_the_threshold_only() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher
        .create_bank(name("TVEC"), settings(Action::Block))
        .unwrap();
    matcher
        .add_entries(&name("TVEC"), &[entry(pdq(0x33, 0), "item-1")], true)
        .unwrap();

    let outcome = matcher.check_hashes(&[pdq(0x33, 31)], &[]).unwrap();
    assert_eq!(outcome.verdict, Verdict::Block);
    assert_eq!(outcome.matches.len(), 1);
    let found = &outcome.matches[0];
    assert_eq!(
        (found.distance, found.entry_id.as_str(), found.source.as_str()),
        (31, "item-1", "gifct")
    );
    assert_eq!(
        found.labels,
        vec!["bank-label".to_string(), "entry-label".to_string()]
    );

    let outcome = matcher.check_hashes(&[pdq(0x33, 32)], &[]).unwrap();
    assert_eq!(outcome.verdict, Verdict::NoMatch);
    assert!(outcome.matches.is_empty());
}

#[test]
fn per_bank_thresholds_disabled_banks_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    let mut tight = settings(Action::Review);
    tight.thresholds.pdq = 4;
    matcher.create_bank(name("TIGHT"), tight).unwrap();
    matcher
        .create_bank(name("LOOSE"), settings(Action::Review))
        .unwrap();
    for bank in ["TIGHT", "LOOSE"] {
        matcher
            .add_entries(&name(bank), &[entry(pdq(0x0f, 0), "")], true)
            .unwrap();
    }
    let outcome = matcher.check_hashes(&[pdq(0x0f, 10)], &[]).unwrap();
    let banks: Vec<&str> = outcome.matches.iter().map(|m| m.bank.as_str()).collect();
    assert_eq!(banks, vec!["LOOSE"]);
    assert_eq!(outcome.verdict, Verdict::Review);

    let outcome = matcher.check_hashes(&[pdq(0x0f, 0)], &[name("TIGHT")]).unwrap();
    assert_eq!(outcome.matches.len(), 1);

    matcher
        .update_bank(
            &name("LOOSE"),
            &BankUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        matcher.check_hashes(&[pdq(0x0f, 10)], &[]).unwrap().verdict,
        Verdict::NoMatch
    );

    assert!(matches!(
        matcher.check_hashes(&[pdq(0, 0)], &[name("NOPE")]),
        Err(Error::BankNotFound(_))
    ));
}

#[test]
fn an_allow_bank_overrides_block() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher
        .create_bank(name("BLOCKED"), settings(Action::Block))
        .unwrap();
    matcher
        .create_bank(name("KNOWN_FP"), settings(Action::Allow))
        .unwrap();
    matcher
        .add_entries(&name("BLOCKED"), &[entry(pdq(0x55, 0), "")], true)
        .unwrap();
    matcher
        .add_entries(&name("KNOWN_FP"), &[entry(pdq(0x55, 3), "")], true)
        .unwrap();
    let outcome = matcher.check_hashes(&[pdq(0x55, 1)], &[]).unwrap();
    assert_eq!(outcome.verdict, Verdict::Allowed);
    assert_eq!(outcome.matches.len(), 2);
    assert_eq!(outcome.matches[0].bank.as_str(), "BLOCKED");
    assert_eq!(matcher.bank(&name("KNOWN_FP")).unwrap().match_count, 1);
}

#[test]
fn removals_and_bank_deletion_take_effect_at_once_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let matcher = open(dir.path());
        matcher.create_bank(name("A"), settings(Action::Block)).unwrap();
        matcher.create_bank(name("B"), settings(Action::Block)).unwrap();
        let entries = [entry(pdq(1, 0), "one"), entry(pdq(0xf0, 0), "two")];
        assert_eq!(
            matcher.add_entries(&name("A"), &entries, true).unwrap(),
            AddOutcome { added: 2, updated: 0 }
        );
        assert_eq!(
            matcher.add_entries(&name("A"), &entries[..1], true).unwrap(),
            AddOutcome { added: 0, updated: 1 }
        );
        matcher.add_entries(&name("B"), &entries, true).unwrap();
        assert_eq!(
            matcher.remove_entries(&name("A"), &[], &["one".into()]).unwrap(),
            1
        );
        assert_eq!(matcher.delete_bank(&name("B")).unwrap(), 2);
        assert!(
            matcher
                .check_hashes(&[pdq(1, 0)], &[])
                .unwrap()
                .matches
                .is_empty()
        );
        assert_eq!(matcher.bank(&name("A")).unwrap().entry_count, 1);
    }
    let matcher = open(dir.path());
    assert!(
        matcher
            .check_hashes(&[pdq(1, 0)], &[])
            .unwrap()
            .matches
            .is_empty()
    );
    assert_eq!(
        matcher.check_hashes(&[pdq(0xf0, 2)], &[]).unwrap().matches.len(),
        1
    );
    assert_eq!(matcher.banks().len(), 1);
    assert_eq!(matcher.bank(&name("A")).unwrap().entry_count, 1);
}

#[test]
fn later_rows_for_a_hash_update_it_within_a_batch_and_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher.create_bank(name("A"), settings(Action::Block)).unwrap();
    let batch = [
        entry(pdq(1, 0), "first"),
        entry(pdq(2, 0), "other"),
        entry(pdq(1, 0), "second"),
    ];
    assert_eq!(
        matcher.add_entries(&name("A"), &batch, false).unwrap(),
        AddOutcome { added: 2, updated: 1 }
    );
    let matched_id = |hash| {
        matcher.check_hashes(&[hash], &[]).unwrap().matches[0]
            .entry_id
            .clone()
    };
    assert_eq!(matched_id(pdq(1, 0)), "second");
    let again = [entry(pdq(2, 0), "third"), entry(pdq(2, 0), "fourth")];
    assert_eq!(
        matcher.add_entries(&name("A"), &again, true).unwrap(),
        AddOutcome { added: 0, updated: 2 }
    );
    assert_eq!(matched_id(pdq(2, 0)), "fourth");
    assert_eq!(matcher.bank(&name("A")).unwrap().entry_count, 2);
    // Removal by hash finds the entry through the index; a hash not in the bank removes
    // nothing.
    assert_eq!(
        matcher
            .remove_entries(&name("A"), &[pdq(2, 0), pdq(3, 0)], &[])
            .unwrap(),
        1
    );
    let mut exported = Vec::new();
    matcher
        .export(&name("A"), None, |entry| {
            exported.push(entry.meta.id);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(exported, ["second"]);
}

#[test]
fn exact_digests_match_only_when_equal() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher
        .create_bank(name("MD5S"), settings(Action::Block))
        .unwrap();
    let stored = HashValue::from_hex(Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72").unwrap();
    let near = HashValue::from_hex(Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f73").unwrap();
    matcher
        .add_entries(&name("MD5S"), &[entry(stored, "")], true)
        .unwrap();
    assert_eq!(
        matcher.check_hashes(&[stored], &[]).unwrap().verdict,
        Verdict::Block
    );
    assert_eq!(
        matcher.check_hashes(&[near], &[]).unwrap().verdict,
        Verdict::NoMatch
    );
}

#[test]
fn invalid_bank_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    let mut bad = settings(Action::Block);
    bad.thresholds.pdq = 200;
    assert!(matches!(
        matcher.create_bank(name("X"), bad),
        Err(Error::Invalid(_))
    ));
    matcher.create_bank(name("X"), settings(Action::Block)).unwrap();
    assert!(matches!(
        matcher.create_bank(name("X"), settings(Action::Block)),
        Err(Error::BankExists(_))
    ));
}

#[test]
fn recent_matches_are_listed_newest_first_and_by_bank() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher.create_bank(name("A"), settings(Action::Block)).unwrap();
    matcher.create_bank(name("B"), settings(Action::Review)).unwrap();
    matcher
        .add_entries(&name("A"), &[entry(pdq(0x11, 0), "a")], true)
        .unwrap();
    matcher
        .add_entries(&name("B"), &[entry(pdq(0x22, 0), "b")], true)
        .unwrap();
    matcher.check_hashes(&[pdq(0x11, 1)], &[]).unwrap();
    matcher.check_hashes(&[pdq(0x22, 2)], &[]).unwrap();
    matcher.check_hashes(&[pdq(0x77, 0)], &[]).unwrap();

    let all = matcher.recent_matches(None, 10).unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.found.entry_id.as_str()).collect();
    assert_eq!(ids, vec!["b", "a"]);
    assert_eq!(all[0].verdict, Verdict::Review);
    assert_eq!(matcher.recent_matches(Some(&name("A")), 10).unwrap().len(), 1);
    assert_eq!(matcher.recent_matches(None, 1).unwrap().len(), 1);
    assert!(matches!(
        matcher.recent_matches(Some(&name("NOPE")), 10),
        Err(Error::BankNotFound(_))
    ));

    for _ in 0..RECENT_MATCHES + 5 {
        matcher.check_hashes(&[pdq(0x11, 0)], &[]).unwrap();
    }
    assert_eq!(
        matcher.recent_matches(None, usize::MAX).unwrap().len(),
        RECENT_MATCHES
    );
}

#[test]
fn the_match_log_and_match_counts_survive_a_restart_and_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MatcherConfig::new(dir.path());
    config.match_log_keep = 3;
    let matcher = Matcher::open(config.clone()).unwrap();
    matcher.create_bank(name("A"), settings(Action::Block)).unwrap();
    matcher
        .add_entries(&name("A"), &[entry(pdq(0x11, 0), "a")], true)
        .unwrap();
    for flipped in 0..5 {
        matcher.check_hashes(&[pdq(0x11, flipped)], &[]).unwrap();
    }
    // Counted at once, before the queue is written.
    assert_eq!(matcher.bank(&name("A")).unwrap().match_count, 5);
    let before = matcher.recent_matches(None, 10).unwrap();
    let distances: Vec<u32> = before.iter().map(|r| r.found.distance).collect();
    assert_eq!(distances, [4, 3, 2]);
    matcher.check_hashes(&[pdq(0x11, 0)], &[]).unwrap();
    // Written on the way out, as `serve` does at shutdown.
    matcher.flush().unwrap();
    let last_match_ms = matcher.bank(&name("A")).unwrap().last_match_ms;
    drop(matcher);

    let matcher = Matcher::open(config).unwrap();
    matcher.flush_match_log().unwrap();
    let view = matcher.bank(&name("A")).unwrap();
    assert_eq!((view.match_count, view.last_match_ms), (6, last_match_ms));
    assert_eq!(view.matches_here, 0);
    let after: Vec<u32> = matcher
        .recent_matches(Some(&name("A")), 10)
        .unwrap()
        .iter()
        .map(|r| r.found.distance)
        .collect();
    assert_eq!(after, [0, 4, 3]);
}

/// Two matchers on one fresh PostgreSQL schema, as two replicas that do not follow the feed on
/// their own; `None` where no test database is configured. The schema lives as long as the
/// backend: keep it past the matchers.
fn replica_pair() -> Option<(
    crate::store::contract_tests::Backend,
    tempfile::TempDir,
    Matcher,
    Matcher,
)> {
    use crate::store::contract_tests::{Backend, test_database_url};
    let backend = Backend::postgres(&test_database_url()?);
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let mut config = MatcherConfig::new(dir.path());
        config.postgres_url = backend.scoped_url.clone();
        Matcher::open(config).unwrap()
    };
    let (first, second) = (open(), open());
    Some((backend, dir, first, second))
}

/// Two matchers on one PostgreSQL schema, as two replicas, neither following the feed on its
/// own: each write is decided on the latest state all the same.
#[test]
fn replicas_decide_writes_on_the_shared_stores_latest_state() {
    let Some((_backend, _dir, first, second)) = replica_pair() else {
        return;
    };
    first.create_bank(name("TVEC"), settings(Action::Block)).unwrap();
    first
        .add_entries(&name("TVEC"), &[entry(pdq(0x11, 0), "from-first")], true)
        .unwrap();

    // The second has applied none of that: its write is refused by the store, it applies the
    // first's changes, and decides again: the hash is stored, so this is an update.
    let outcome = second
        .add_entries(&name("TVEC"), &[entry(pdq(0x11, 0), "from-second")], true)
        .unwrap();
    assert_eq!(outcome, AddOutcome { added: 0, updated: 1 });
    let found = second.check_hashes(&[pdq(0x11, 0)], &[]).unwrap();
    assert_eq!(found.matches[0].entry_id, "from-second");
    assert_eq!(second.bank(&name("TVEC")).unwrap().entry_count, 1);

    // The first applies the removal when it catches up.
    assert_eq!(
        second
            .remove_entries(&name("TVEC"), &[], &["from-second".into()])
            .unwrap(),
        1
    );
    first.catch_up().unwrap();
    assert!(
        first
            .check_hashes(&[pdq(0x11, 0)], &[])
            .unwrap()
            .matches
            .is_empty()
    );
    assert_eq!(first.bank(&name("TVEC")).unwrap().entry_count, 0);
    let status = first.feed_status().unwrap();
    assert_eq!((status.behind(), status.error), (0, None));

    // A bank just created through one is found by the other when a check names it.
    first
        .create_bank(name("NEWER"), settings(Action::Review))
        .unwrap();
    let outcome = second.check_hashes(&[pdq(0x22, 0)], &[name("NEWER")]).unwrap();
    assert_eq!(outcome.verdict, Verdict::NoMatch);

    // Bank deletion through one is seen by the other.
    second.delete_bank(&name("TVEC")).unwrap();
    first.catch_up().unwrap();
    assert!(matches!(first.bank(&name("TVEC")), Err(Error::BankNotFound(_))));
}

/// Cropped (in a corner, to a square, across the width) and mirrored copies of a flagged photo
/// match a bank that stored the photo's derived pictures, and only such a bank.
#[test]
fn derived_pictures_catch_crops_and_mirrors() {
    let photo = bridge_photo();
    let decoded = image::load_from_memory(&photo).unwrap().to_rgb8();
    let (w, h) = decoded.dimensions();
    // 9% cropped away from the left and the top: not on the grid of stored windows.
    let cropped =
        png(
            &image::imageops::crop_imm(&decoded, w * 9 / 100, h * 9 / 100, w * 91 / 100, h * 91 / 100)
                .to_image(),
        );
    let mirrored = png(&image::imageops::flip_horizontal(&decoded));
    // Cut to a square, as apps do (37% of the width), and 13% of the width only.
    let squared = png(&image::imageops::crop_imm(&decoded, (w - h) / 2, 0, h, h).to_image());
    let narrowed = png(&image::imageops::crop_imm(&decoded, w * 13 / 200, 0, w * 87 / 100, h).to_image());

    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    for (bank, derived) in [
        ("PLAIN", DerivedPictures::default()),
        (
            "DERIVED",
            DerivedPictures {
                dihedral: true,
                crops: true,
                rotations: false,
            },
        ),
    ] {
        matcher.create_bank(name(bank), settings(Action::Block)).unwrap();
        let entry = ImageEntry {
            algorithms: vec![Algorithm::Pdq],
            id: "bridge".into(),
            derived,
            ..ImageEntry::default()
        };
        let (_, added) = matcher.add_image(&name(bank), &photo, &entry).unwrap();
        assert_eq!(added.added, if bank == "PLAIN" { 1 } else { 81 });
    }
    let plain_check = ImageCheck {
        algorithms: vec![Algorithm::Pdq],
        ..ImageCheck::default()
    };
    for copy in [&cropped, &mirrored, &squared, &narrowed] {
        let outcome = matcher.check_image(copy, &plain_check).unwrap();
        let banks: Vec<&str> = outcome.matches.iter().map(|m| m.bank.as_str()).collect();
        assert!(
            banks.iter().all(|b| *b == "DERIVED") && !banks.is_empty(),
            "{banks:?}"
        );
    }
}

/// A copy fitted into a portrait frame over a blurred copy of itself misses the photo's own
/// hash, and matches through its trimmed view when the check asks to trim.
#[test]
fn a_photo_on_a_blurred_backdrop_matches_when_trimmed() {
    let photo = bridge_photo();
    let decoded = image::load_from_memory(&photo).unwrap().to_rgb8();
    let (framed, _) = crate::hash::backdrop::on_blurred_backdrop(&decoded);
    let framed = png(&framed);
    let entry = ImageEntry {
        algorithms: vec![Algorithm::Pdq],
        id: "bridge".into(),
        ..ImageEntry::default()
    };
    let (_dir, matcher) = matcher_holding(&photo, &entry);
    let check = |trim: bool| {
        let check = ImageCheck {
            algorithms: vec![Algorithm::Pdq],
            trim,
            ..ImageCheck::default()
        };
        matcher.check_image(&framed, &check).unwrap()
    };
    assert_eq!(check(false).verdict, Verdict::NoMatch);
    let trimmed = check(true);
    assert_eq!(trimmed.verdict, Verdict::Block);
    assert!(
        trimmed.matches.iter().all(|m| m.view == View::Trimmed),
        "{:?}",
        trimmed.matches
    );
}

/// A copy with a ticker laid over its lower edge misses the photo's own hash, but windows
/// that leave the lower edge out match windows the bank stored, when the check asks for
/// windows.
#[test]
fn overlay_windows_see_past_a_ticker_over_an_edge() {
    let photo = bridge_photo();
    let mut copy = image::load_from_memory(&photo).unwrap().to_rgb8();
    let (w, h) = copy.dimensions();
    // A news ticker over the picture: white letters (bars here) on a dark strip across the
    // bottom 16%.
    let top = h * 84 / 100;
    for y in top..h {
        for x in 0..w {
            let letter = (y - top) % 14 < 9 && x % 23 < 15 && y < h - 6;
            let shade = if letter { 250 } else { 20 };
            copy.put_pixel(x, y, image::Rgb([shade, shade, shade]));
        }
    }
    let copy = png(&copy);

    let entry = ImageEntry {
        algorithms: vec![Algorithm::Pdq],
        id: "bridge".into(),
        derived: DerivedPictures {
            crops: true,
            ..DerivedPictures::default()
        },
        ..ImageEntry::default()
    };
    let (_dir, matcher) = matcher_holding(&photo, &entry);
    let check = |windows: bool| {
        matcher
            .check_image(
                &copy,
                &ImageCheck {
                    algorithms: vec![Algorithm::Pdq],
                    windows,
                    ..ImageCheck::default()
                },
            )
            .unwrap()
    };
    assert!(check(false).matches.is_empty(), "{:?}", check(false).matches);
    let outcome = check(true);
    assert_eq!(outcome.verdict, Verdict::Block);
    assert_eq!(outcome.matches[0].view, View::Window);
    assert_eq!(outcome.matches[0].entry_id, "bridge");
}

/// A strip of text along the lower edge of a flat picture: the windows above it are as flat
/// as the stored windows they equal, so they match only a bank whose minimum quality lets
/// such hashes count.
#[test]
fn flat_windows_match_only_banks_that_accept_their_quality() {
    let flat = |x: u32| image::Rgb([90 + (x / 100) as u8, 90, 90]);
    let picture = image::RgbImage::from_fn(300, 200, |x, _| flat(x));
    let ticker = image::RgbImage::from_fn(300, 200, |x, y| match y >= 170 && x % 23 < 15 && y % 14 < 9 {
        true => image::Rgb([250, 250, 250]),
        false if y >= 168 => image::Rgb([20, 20, 20]),
        false => flat(x),
    });
    let entry = ImageEntry {
        algorithms: vec![Algorithm::Pdq],
        allow_low_quality: true,
        derived: DerivedPictures {
            crops: true,
            ..DerivedPictures::default()
        },
        ..ImageEntry::default()
    };
    let (_dir, matcher) = matcher_holding(&png(&picture), &entry);
    let windows = ImageCheck {
        algorithms: vec![Algorithm::Pdq],
        windows: true,
        ..ImageCheck::default()
    };
    let window_matches = || {
        let outcome = matcher.check_image(&png(&ticker), &windows).unwrap();
        outcome.matches.iter().filter(|m| m.view == View::Window).count()
    };
    assert_eq!(window_matches(), 0);
    matcher
        .update_bank(
            &name("TVEC"),
            &BankUpdate {
                min_quality: Some(0),
                ..BankUpdate::default()
            },
        )
        .unwrap();
    assert!(window_matches() > 0);
}

/// A flat picture (quality far below 50) is refused unless forced; once stored, its matches are
/// marked low quality while the bank's minimum is above the upload's quality.
#[test]
fn the_quality_gate_refuses_flat_pictures_unless_forced_and_marks_their_matches() {
    let mut flat = image::RgbImage::from_pixel(300, 200, image::Rgb([90, 90, 90]));
    for (x, _, pixel) in flat.enumerate_pixels_mut() {
        pixel.0[0] = 90 + (x / 100) as u8;
    }
    let bytes = png(&flat);

    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    let bank = name("TVEC");
    matcher
        .create_bank(bank.clone(), settings(Action::Block))
        .unwrap();
    let entry = ImageEntry {
        algorithms: vec![Algorithm::Pdq],
        ..ImageEntry::default()
    };
    let Err(Error::LowQuality(refused)) = matcher.add_image(&bank, &bytes, &entry) else {
        panic!("a flat picture was added without allow_low_quality");
    };
    assert!(refused.quality < 50 && refused.minimum == 50, "{refused:?}");
    assert_eq!(matcher.bank(&bank).unwrap().entry_count, 0);

    let forced = ImageEntry {
        allow_low_quality: true,
        ..entry
    };
    let (_, added) = matcher.add_image(&bank, &bytes, &forced).unwrap();
    assert_eq!(added.added, 1);
    let check = ImageCheck {
        algorithms: vec![Algorithm::Pdq],
        ..ImageCheck::default()
    };
    let outcome = matcher.check_image(&bytes, &check).unwrap();
    assert_eq!(outcome.matches.len(), 1);
    assert!(outcome.matches[0].low_quality);
    // The mark does not change the verdict.
    assert_eq!(outcome.verdict, Verdict::Block);
    // A check of given hashes does not know their quality.
    let given = matcher.check_hashes(&[outcome.hashes[0].value], &[]).unwrap();
    assert!(!given.matches[0].low_quality);
    // The mark follows the bank's minimum.
    matcher
        .update_bank(
            &bank,
            &BankUpdate {
                min_quality: Some(0),
                ..BankUpdate::default()
            },
        )
        .unwrap();
    let outcome = matcher.check_image(&bytes, &check).unwrap();
    assert!(!outcome.matches[0].low_quality);
}

/// A screenshot of a page showing a flagged photo beside lines of text matches through the
/// picture found in the page, with `trim`, and not without.
#[test]
fn a_screenshot_of_a_page_matches_through_its_picture() {
    let photo_bytes = bridge_photo();
    let photo = image::load_from_memory(&photo_bytes).unwrap().to_rgb8();
    let photo = image::imageops::resize(&photo, 640, 402, image::imageops::FilterType::Triangle);
    let mut page = image::RgbImage::from_pixel(1200, 700, image::Rgb([250, 250, 250]));
    image::imageops::replace(&mut page, &photo, 40, 150);
    let grey = image::Rgb([120, 120, 120]);
    for i in 0..14u32 {
        for y in 160 + 30 * i..172 + 30 * i {
            for x in 720..720 + 420 - 17 * i {
                page.put_pixel(x, y, grey);
            }
        }
    }
    for y in 0..50 {
        for x in 0..1200 {
            page.put_pixel(x, y, image::Rgb([220, 222, 226]));
        }
    }
    let screenshot = png(&page);

    let entry = ImageEntry {
        algorithms: vec![Algorithm::Pdq],
        ..ImageEntry::default()
    };
    let (_dir, matcher) = matcher_holding(&photo_bytes, &entry);
    let check = |trim: bool| {
        matcher
            .check_image(
                &screenshot,
                &ImageCheck {
                    algorithms: vec![Algorithm::Pdq],
                    trim,
                    ..ImageCheck::default()
                },
            )
            .unwrap()
    };
    assert!(check(false).matches.is_empty());
    let outcome = check(true);
    assert_eq!(outcome.verdict, Verdict::Block);
    assert_eq!(outcome.matches[0].view, View::Picture);
}

/// Loading a snapshot into a running matcher (what a replica behind a pruned feed does)
/// leaves it exactly as the store has it: removed entries and deleted banks gone, the rest
/// matchable, counts right, and the match counters of surviving banks kept.
#[test]
fn a_snapshot_loaded_in_place_replaces_the_whole_view() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    for bank in ["KEEP", "GONE"] {
        matcher.create_bank(name(bank), settings(Action::Block)).unwrap();
    }
    let kept = [entry(pdq(0x11, 0), "kept"), entry(pdq(0x22, 0), "removed")];
    matcher.add_entries(&name("KEEP"), &kept, true).unwrap();
    matcher
        .add_entries(&name("GONE"), &[entry(pdq(0x44, 0), "gone")], true)
        .unwrap();
    assert_eq!(
        matcher.check_hashes(&[pdq(0x11, 3)], &[]).unwrap().matches.len(),
        1
    );
    matcher
        .remove_entries(&name("KEEP"), &[], &["removed".into()])
        .unwrap();
    matcher.delete_bank(&name("GONE")).unwrap();

    matcher.load().unwrap();

    let found = |fill: u8| matcher.check_hashes(&[pdq(fill, 0)], &[]).unwrap().matches.len();
    assert_eq!((found(0x11), found(0x22), found(0x44)), (1, 0, 0));
    let banks = matcher.banks();
    assert_eq!(banks.len(), 1);
    assert_eq!((banks[0].entry_count, banks[0].match_count), (1, 2));
    assert!(matcher.bank(&name("GONE")).is_err());
    // Writes go on as before.
    matcher
        .add_entries(&name("KEEP"), &[entry(pdq(0x55, 0), "new")], true)
        .unwrap();
    assert_eq!(found(0x55), 1);
}

/// Loads random PDQ hashes into `bank` in non-durable batches of `sizes`, then ends the load
/// with an empty durable commit, as a load whose rows fill its batches exactly does.
fn load_random_pdq(matcher: &Matcher, bank: &str, sizes: &[usize]) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random_pdq = || {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        HashValue::from_bytes(Algorithm::Pdq, &bytes).unwrap()
    };
    for &size in sizes {
        let batch: Vec<NewEntry> = (0..size).map(|_| entry(random_pdq(), "")).collect();
        matcher.add_entries(&name(bank), &batch, false).unwrap();
    }
    matcher.add_entries(&name(bank), &[], true).unwrap();
}

fn unsettled(matcher: &Matcher) -> Vec<Algorithm> {
    Algorithm::ALL
        .into_iter()
        .filter(|&algorithm| matcher.index.get(algorithm).needs_settling())
        .collect()
}

/// A load's last, durable commit folds every index's tail into its tables, even when that
/// commit adds nothing itself: searches after a load never scan what the load added.
#[test]
fn the_end_of_a_load_settles_every_index() {
    let dir = tempfile::tempdir().unwrap();
    let matcher = open(dir.path());
    matcher
        .create_bank(name("LOAD"), settings(Action::Block))
        .unwrap();
    // The first batch is folded in as it arrives; the second, under an eighth of the first,
    // would stay in the tail.
    load_random_pdq(&matcher, "LOAD", &[70_000, 8_500]);
    assert_eq!(unsettled(&matcher), []);
}

/// A replica that follows another's load folds what it applied into its tables once caught up.
#[test]
fn a_replica_settles_what_it_applied_once_caught_up() {
    let Some((_backend, _dir, loader, follower)) = replica_pair() else {
        return;
    };
    // Applied in the feed's batches, these sizes leave more than a quick scan in the tail.
    loader.create_bank(name("LOAD"), settings(Action::Block)).unwrap();
    load_random_pdq(&loader, "LOAD", &[120_000, 14_000]);
    follower.catch_up().unwrap();
    assert_eq!(follower.bank(&name("LOAD")).unwrap().entry_count, 134_000);
    assert_eq!(unsettled(&follower), []);
}
