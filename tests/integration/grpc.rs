//! End-to-end: every RPC of `hashsieve.v1` through the generated clients against a real server
//! on 127.0.0.1:0, including the error statuses.

use crate::common::{TestServer, pdq, read_testdata};
use hashsieve::proto as pb;
use hashsieve::proto::banks_client::BanksClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const ORIGINAL: &str = "pdq/bridge-mods/aaa-orig.jpg";
const EDITED: &str = "pdq/bridge-mods/sharpen-a-lot.jpg";
const BRIDGE_PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

fn bank(name: &str, action: pb::Action) -> pb::CreateBankRequest {
    pb::CreateBankRequest {
        bank: Some(pb::Bank {
            name: name.into(),
            action: action as i32,
            labels: vec!["tvec".into()],
            enabled: Some(true),
            ..Default::default()
        }),
    }
}

fn entry(hex: &str, id: &str) -> pb::Entry {
    pb::Entry {
        hash: Some(pdq(hex)),
        id: id.into(),
        labels: vec!["video".into()],
        ..Default::default()
    }
}

/// Adds entries to a bank through one `AddEntries` stream.
async fn load(
    banks: &mut BanksClient<Channel>,
    bank: &str,
    entries: Vec<pb::Entry>,
) -> pb::AddEntriesResponse {
    let request = pb::AddEntriesRequest {
        bank: bank.into(),
        entries,
        ..Default::default()
    };
    banks
        .add_entries(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner()
}

/// `BRIDGE_PDQ` with its last `flips` bits inverted.
fn flipped(flips: u32) -> String {
    let value = u128::from_str_radix(&BRIDGE_PDQ[32..], 16).unwrap() ^ ((1u128 << flips) - 1);
    format!("{}{value:032x}", &BRIDGE_PDQ[..32])
}

#[tokio::test]
async fn bank_lifecycle_and_errors() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;

    let created = banks
        .create_bank(bank("TVEC", pb::Action::Block))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.thresholds.unwrap().pdq, Some(31));
    assert_eq!(created.min_quality, Some(50));
    assert!(created.created_at.is_some());
    // A client that leaves `enabled` out gets a bank that matches, not a disabled one.
    let mut unstated = bank("UNSTATED", pb::Action::Review);
    unstated.bank.as_mut().unwrap().enabled = None;
    let unstated = banks.create_bank(unstated).await.unwrap().into_inner();
    assert_eq!(unstated.enabled, Some(true));
    let mut disabled = bank("DISABLED", pb::Action::Review);
    disabled.bank.as_mut().unwrap().enabled = Some(false);
    let disabled = banks.create_bank(disabled).await.unwrap().into_inner();
    assert_eq!(disabled.enabled, Some(false));
    for name in ["UNSTATED", "DISABLED"] {
        banks
            .delete_bank(pb::DeleteBankRequest { name: name.into() })
            .await
            .unwrap();
    }
    let again = banks
        .create_bank(bank("TVEC", pb::Action::Block))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    assert_eq!(
        banks
            .create_bank(bank("lower case", pb::Action::Block))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        banks
            .create_bank(bank("NO_ACTION", pb::Action::Unspecified))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    let updated = banks
        .update_bank(pb::UpdateBankRequest {
            name: "TVEC".into(),
            action: Some(pb::Action::Review as i32),
            thresholds: Some(pb::Thresholds {
                pdq: Some(20),
                ..Default::default()
            }),
            labels: Some(pb::Labels {
                values: vec!["a".into(), "b".into()],
            }),
            description: Some("test bank".into()),
            enabled: None,
            min_quality: Some(70),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.action, pb::Action::Review as i32);
    assert_eq!(updated.thresholds.unwrap().pdq, Some(20));
    assert_eq!(updated.thresholds.unwrap().phash, Some(8));
    assert_eq!(updated.labels, vec!["a", "b"]);
    assert_eq!(updated.enabled, Some(true));
    assert_eq!(updated.min_quality, Some(70));
    let impossible_quality = pb::UpdateBankRequest {
        name: "TVEC".into(),
        min_quality: Some(101),
        ..Default::default()
    };
    assert_eq!(
        banks.update_bank(impossible_quality).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let too_loose = pb::UpdateBankRequest {
        name: "TVEC".into(),
        thresholds: Some(pb::Thresholds {
            pdq: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        banks.update_bank(too_loose).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let fetched = banks
        .get_bank(pb::GetBankRequest { name: "TVEC".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.description, "test bank");
    assert_eq!(
        banks
            .get_bank(pb::GetBankRequest { name: "NOPE".into() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    banks
        .create_bank(bank("ALLOWED", pb::Action::Allow))
        .await
        .unwrap();
    let listed = banks
        .list_banks(pb::ListBanksRequest {})
        .await
        .unwrap()
        .into_inner()
        .banks;
    assert_eq!(
        listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        vec!["ALLOWED", "TVEC"]
    );

    load(&mut banks, "TVEC", vec![entry(BRIDGE_PDQ, "x")]).await;
    let deleted = banks
        .delete_bank(pb::DeleteBankRequest { name: "TVEC".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.entries_removed, 1);
    assert_eq!(
        banks
            .delete_bank(pb::DeleteBankRequest { name: "TVEC".into() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn bulk_load_counts_added_updated_and_rejected_rows() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    banks.create_bank(bank("TVEC", pb::Action::Block)).await.unwrap();
    let messages = vec![
        pb::AddEntriesRequest {
            bank: "TVEC".into(),
            entries: vec![
                entry(BRIDGE_PDQ, "a"),
                entry("zz", "bad-hex"),
                entry(&flipped(40), "b"),
            ],
            ..Default::default()
        },
        pb::AddEntriesRequest {
            bank: String::new(),
            entries: vec![
                entry(BRIDGE_PDQ, "a-renamed"),
                entry(&BRIDGE_PDQ[..60], "short"),
                pb::Entry {
                    hash: None,
                    ..Default::default()
                },
                pb::Entry {
                    hash: Some(pb::HashValue {
                        algorithm: pb::Algorithm::Md5 as i32,
                        hex: "900150983cd24fb0d6963f7d28e17f72".into(),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    ];
    let response = banks
        .add_entries(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.added, response.updated, response.rejected), (3, 1, 3));
    let indexes: Vec<u64> = response.rejections.iter().map(|r| r.index).collect();
    assert_eq!(indexes, vec![1, 4, 5]);
    assert!(
        response.rejections[0].reason.contains("non-hex"),
        "{}",
        response.rejections[0].reason
    );
    assert!(
        response.rejections[1].reason.contains("64 hex digits"),
        "{}",
        response.rejections[1].reason
    );

    let fetched = banks
        .get_bank(pb::GetBankRequest { name: "TVEC".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.entry_count, 3);

    // An unknown bank fails the stream with NOT_FOUND; a stream without a bank is invalid.
    let unknown = vec![pb::AddEntriesRequest {
        bank: "NOPE".into(),
        entries: vec![entry(BRIDGE_PDQ, "")],
        ..Default::default()
    }];
    assert_eq!(
        banks
            .add_entries(tokio_stream::iter(unknown))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let nameless = vec![pb::AddEntriesRequest {
        bank: String::new(),
        entries: vec![entry(BRIDGE_PDQ, "")],
        ..Default::default()
    }];
    assert_eq!(
        banks
            .add_entries(tokio_stream::iter(nameless))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    // Export gives back exactly what is stored, with the updated id.
    let mut stream = banks
        .export_entries(pb::ExportEntriesRequest {
            bank: "TVEC".into(),
            algorithm: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut exported = Vec::new();
    while let Some(message) = stream.next().await {
        exported.extend(message.unwrap().entries);
    }
    assert_eq!(exported.len(), 3);
    let bridge = exported
        .iter()
        .find(|e| e.hash.as_ref().unwrap().hex == BRIDGE_PDQ)
        .unwrap();
    assert_eq!(bridge.id, "a-renamed");
    let only_md5 = banks
        .export_entries(pb::ExportEntriesRequest {
            bank: "TVEC".into(),
            algorithm: pb::Algorithm::Md5 as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(
        only_md5
            .iter()
            .map(|m| m.as_ref().unwrap().entries.len())
            .sum::<usize>(),
        1
    );
    assert_eq!(
        banks
            .export_entries(pb::ExportEntriesRequest {
                bank: "NOPE".into(),
                algorithm: 0
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Removal by id and by hash.
    let removed = banks
        .remove_entries(pb::RemoveEntriesRequest {
            bank: "TVEC".into(),
            hashes: vec![pdq(&flipped(40))],
            ids: vec!["a-renamed".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed, 2);
    let bad = pb::RemoveEntriesRequest {
        bank: "TVEC".into(),
        hashes: vec![pdq("xyz")],
        ids: vec![],
    };
    assert_eq!(
        banks.remove_entries(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

/// Rows whose PDQ quality is below the bank's minimum are rejected and counted unless the
/// message forces them; rows of unknown quality, and other algorithms, pass.
#[tokio::test]
async fn bulk_load_refuses_low_quality_pdq_rows_unless_forced() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    let mut strict = bank("STRICT", pb::Action::Block);
    strict.bank.as_mut().unwrap().min_quality = Some(60);
    banks.create_bank(strict).await.unwrap();
    let with_quality = |hex: &str, quality: u32| pb::Entry {
        quality: Some(quality),
        ..entry(hex, "")
    };
    let md5 = pb::Entry {
        hash: Some(pb::HashValue {
            algorithm: pb::Algorithm::Md5 as i32,
            hex: "900150983cd24fb0d6963f7d28e17f72".into(),
        }),
        quality: Some(0),
        ..Default::default()
    };
    let messages = vec![
        pb::AddEntriesRequest {
            bank: "STRICT".into(),
            entries: vec![
                with_quality(&flipped(1), 59),
                with_quality(&flipped(2), 60),
                entry(&flipped(3), "unknown quality"),
                with_quality(&flipped(4), 101),
                md5,
            ],
            ..Default::default()
        },
        pb::AddEntriesRequest {
            entries: vec![with_quality(&flipped(5), 10)],
            allow_low_quality: true,
            ..Default::default()
        },
    ];
    let response = banks
        .add_entries(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (response.added, response.rejected, response.low_quality),
        (4, 2, 1)
    );
    let reasons: Vec<(u64, &str)> = response
        .rejections
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(reasons[0].0, 0);
    assert!(
        reasons[0].1.contains("below the bank's minimum 60"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, 3);
    assert!(reasons[1].1.contains("0 to 100"), "{reasons:?}");
}

#[tokio::test]
async fn an_edited_copy_of_a_flagged_image_is_blocked_and_allow_banks_override() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    let mut matcher = server.matcher().await;
    banks.create_bank(bank("TVEC", pb::Action::Block)).await.unwrap();

    let added = banks
        .add_image(pb::AddImageRequest {
            bank: "TVEC".into(),
            image: read_testdata(ORIGINAL),
            id: "bridge".into(),
            labels: vec!["video".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added, 3);
    assert_eq!(added.hashes[0].hex, BRIDGE_PDQ);
    assert_eq!(added.hashes[0].quality, 100);

    let check = |image: Vec<u8>| pb::CheckImageRequest {
        image,
        ..Default::default()
    };
    let response = matcher
        .check_image(check(read_testdata(EDITED)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
    let found = &response.matches[0];
    assert_eq!((found.bank.as_str(), found.entry_id.as_str()), ("TVEC", "bridge"));
    assert!(
        found.distance > 0 && found.distance <= 31,
        "distance {}",
        found.distance
    );
    assert_eq!(found.labels, vec!["tvec", "video"]);
    let pdq_hash = response
        .hashes
        .iter()
        .find(|h| h.algorithm == pb::Algorithm::Pdq as i32)
        .unwrap();
    assert!(pdq_hash.quality >= 50);
    assert!(
        response
            .hashes
            .iter()
            .any(|h| h.algorithm == pb::Algorithm::Sha256 as i32 && h.quality == -1)
    );

    // A mirrored copy matches through PDQ's dihedral variants, and says which.
    let mirrored = matcher
        .check_image(check(read_testdata("pdq/reg-test-input/dih/bridge-6-flipy.jpg")))
        .await
        .unwrap();
    let mirrored = mirrored.into_inner();
    assert_eq!(mirrored.verdict, pb::Verdict::Block as i32);
    assert_ne!(mirrored.matches[0].transform, pb::Transform::Original as i32);
    let plain = pb::CheckImageRequest {
        dihedral: Some(false),
        ..check(read_testdata("pdq/reg-test-input/dih/bridge-6-flipy.jpg"))
    };
    assert_eq!(
        matcher.check_image(plain).await.unwrap().into_inner().verdict,
        pb::Verdict::NoMatch as i32
    );

    // The recent-matches view lists what just matched, newest first.
    let recent = banks
        .list_recent_matches(pb::ListRecentMatchesRequest {
            bank: "TVEC".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .matches;
    assert!(recent.len() >= 2);
    assert_eq!(
        recent[0].r#match.as_ref().unwrap().transform,
        pb::Transform::FlipY as i32
    );
    let unknown = pb::ListRecentMatchesRequest {
        bank: "NOPE".into(),
        limit: 0,
    };
    assert_eq!(
        banks.list_recent_matches(unknown).await.unwrap_err().code(),
        Code::NotFound
    );

    // The photo letterboxed in black bars and given a white caption band: no match as a whole,
    // a match once trimmed, saying so.
    let photo = image::load_from_memory(&read_testdata(ORIGINAL))
        .unwrap()
        .to_rgb8();
    let (w, h) = photo.dimensions();
    let mut framed = image::RgbImage::from_pixel(w, h * 3 / 2, image::Rgb([0, 0, 0]));
    for y in 0..h / 8 {
        for x in 0..w {
            framed.put_pixel(x, y, image::Rgb([255, 255, 255]));
        }
    }
    image::imageops::overlay(&mut framed, &photo, 0, i64::from(h / 4));
    let mut png = Vec::new();
    framed
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let whole = matcher
        .check_image(check(png.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.verdict, pb::Verdict::NoMatch as i32);
    let trimmed = pb::CheckImageRequest {
        trim: Some(true),
        ..check(png)
    };
    let trimmed = matcher.check_image(trimmed).await.unwrap().into_inner();
    assert_eq!(trimmed.verdict, pb::Verdict::Block as i32);
    assert_eq!(trimmed.matches[0].view, pb::View::Trimmed as i32);
    assert!(trimmed.matches[0].distance <= 8, "{:?}", trimmed.matches[0]);

    // An unrelated image does not match.
    let other = matcher
        .check_image(check(read_testdata(
            "pdq/reg-test-input/labelme-subset/q2821.jpg",
        )))
        .await
        .unwrap();
    assert_eq!(other.into_inner().verdict, pb::Verdict::NoMatch as i32);

    // A known false positive in an allow bank overrides the block.
    banks
        .create_bank(bank("FALSE_POSITIVES", pb::Action::Allow))
        .await
        .unwrap();
    load(&mut banks, "FALSE_POSITIVES", vec![entry(BRIDGE_PDQ, "fp")]).await;
    let response = matcher
        .check_image(check(read_testdata(EDITED)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Allowed as i32);

    // Hash checks: by bank filter, and the error cases.
    let hashes = pb::CheckHashesRequest {
        hashes: vec![pdq(&flipped(5))],
        banks: vec!["TVEC".into()],
    };
    let response = matcher.check_hashes(hashes).await.unwrap().into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
    assert_eq!(response.matches[0].distance, 5);
    assert!(response.hashes.is_empty());
    for (request, code) in [
        (
            pb::CheckHashesRequest {
                hashes: vec![],
                banks: vec![],
            },
            Code::InvalidArgument,
        ),
        (
            pb::CheckHashesRequest {
                hashes: vec![pdq("00")],
                banks: vec![],
            },
            Code::InvalidArgument,
        ),
        (
            pb::CheckHashesRequest {
                hashes: vec![pdq(&"g".repeat(64))],
                banks: vec![],
            },
            Code::InvalidArgument,
        ),
        (
            pb::CheckHashesRequest {
                hashes: vec![pb::HashValue {
                    algorithm: 0,
                    hex: BRIDGE_PDQ.into(),
                }],
                banks: vec![],
            },
            Code::InvalidArgument,
        ),
        (
            pb::CheckHashesRequest {
                hashes: vec![pdq(BRIDGE_PDQ)],
                banks: vec!["UNKNOWN".into()],
            },
            Code::NotFound,
        ),
    ] {
        assert_eq!(matcher.check_hashes(request).await.unwrap_err().code(), code);
    }
}

/// A copy with a news ticker over its lower edge: no match as uploaded, a match through one of
/// its overlay windows against a bank that stored the photo's sub-windows, reported as such.
#[tokio::test]
async fn a_ticker_over_an_edge_matches_through_a_window() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    let mut matcher = server.matcher().await;
    banks.create_bank(bank("TVEC", pb::Action::Block)).await.unwrap();
    let added = banks
        .add_image(pb::AddImageRequest {
            bank: "TVEC".into(),
            image: read_testdata(ORIGINAL),
            algorithms: vec![pb::Algorithm::Pdq as i32],
            id: "bridge".into(),
            store_crops: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.added, 74);

    let mut copy = image::load_from_memory(&read_testdata(ORIGINAL))
        .unwrap()
        .to_rgb8();
    let h = copy.height();
    let top = h * 84 / 100;
    for (x, y, pixel) in copy.enumerate_pixels_mut().filter(|(_, y, _)| *y >= top) {
        let letter = (y - top) % 14 < 9 && x % 23 < 15 && y < h - 6;
        pixel.0 = if letter { [250; 3] } else { [20; 3] };
    }
    let mut png = Vec::new();
    copy.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let check = |windows: bool| pb::CheckImageRequest {
        image: png.clone(),
        windows: Some(windows),
        ..Default::default()
    };
    let plain = matcher.check_image(check(false)).await.unwrap().into_inner();
    assert_eq!(plain.verdict, pb::Verdict::NoMatch as i32, "{plain:?}");
    let windows = matcher.check_image(check(true)).await.unwrap().into_inner();
    assert_eq!(windows.verdict, pb::Verdict::Block as i32);
    assert_eq!(windows.matches[0].view, pb::View::Window as i32);
    assert_eq!(windows.matches[0].entry_id, "bridge");
}

#[tokio::test]
async fn bad_images_get_precise_statuses() {
    let server = TestServer::start().await;
    let mut matcher = server.matcher().await;
    let mut banks = server.banks().await;
    banks.create_bank(bank("TVEC", pb::Action::Block)).await.unwrap();
    let original = read_testdata(ORIGINAL);
    let png = read_testdata("pdq/misc-images/c.png");
    let cases = [
        (Vec::new(), Code::InvalidArgument),
        (b"not an image at all".to_vec(), Code::InvalidArgument),
        (png[..png.len() / 3].to_vec(), Code::InvalidArgument),
        (
            read_testdata("bad/images/bomb-png-30000x30000.png"),
            Code::ResourceExhausted,
        ),
    ];
    for (image, code) in cases {
        let status = matcher
            .check_image(pb::CheckImageRequest {
                image,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
    }
    // An image over the size limit is refused before decoding, with the limit in the message.
    let mut oversized = original.clone();
    oversized.resize(33 << 20, 0);
    let status = matcher
        .check_image(pb::CheckImageRequest {
            image: oversized,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());
    assert!(status.message().contains("33554432"), "{}", status.message());
    let unknown_bank = pb::CheckImageRequest {
        image: original.clone(),
        banks: vec!["NOPE".into()],
        ..Default::default()
    };
    assert_eq!(
        matcher.check_image(unknown_bank).await.unwrap_err().code(),
        Code::NotFound
    );
    let add_to_unknown = pb::AddImageRequest {
        bank: "NOPE".into(),
        image: original.clone(),
        ..Default::default()
    };
    assert_eq!(
        banks.add_image(add_to_unknown).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn hash_image_returns_hashes_and_dihedral_variants() {
    let server = TestServer::start().await;
    let mut matcher = server.matcher().await;
    let request = pb::HashImageRequest {
        image: read_testdata("pdq/reg-test-input/dih/bridge-1-original.jpg"),
        algorithms: vec![
            pb::Algorithm::Pdq as i32,
            pb::Algorithm::Phash as i32,
            pb::Algorithm::Md5 as i32,
        ],
        dihedral: true,
    };
    let response = matcher.hash_image(request).await.unwrap().into_inner();
    assert_eq!(response.hashes.len(), 3);
    assert_eq!(response.hashes[0].hex, BRIDGE_PDQ);
    assert_eq!(response.pdq_dihedral.len(), 8);
    assert_eq!(response.pdq_dihedral[1].transform, pb::Transform::Rotate90 as i32);
    assert_eq!(
        response.pdq_dihedral[1].hex,
        "30a10efd71c83f429013d48d0ffffc52e34e0e17ada952a9d29685211ea9e5af"
    );
    assert!(response.width > 0 && response.height > 0);
    let default = pb::HashImageRequest {
        image: read_testdata(ORIGINAL),
        algorithms: vec![],
        dihedral: false,
    };
    let response = matcher.hash_image(default).await.unwrap().into_inner();
    assert_eq!(response.hashes.len(), 1);
    assert!(response.pdq_dihedral.is_empty());
}

#[tokio::test]
async fn check_stream_answers_in_order_and_survives_bad_items() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    banks.create_bank(bank("TVEC", pb::Action::Review)).await.unwrap();
    load(&mut banks, "TVEC", vec![entry(BRIDGE_PDQ, "a")]).await;
    let mut matcher = server.matcher().await;
    use pb::check_stream_request::Check;
    let mut requests = Vec::new();
    for i in 0..40 {
        let check = match i % 4 {
            0 => Some(Check::Image(pb::CheckImageRequest {
                image: read_testdata(EDITED),
                ..Default::default()
            })),
            1 => Some(Check::Hashes(pb::CheckHashesRequest {
                hashes: vec![pdq(&flipped(3))],
                banks: vec![],
            })),
            2 => Some(Check::Hashes(pb::CheckHashesRequest {
                hashes: vec![pdq("bad")],
                banks: vec![],
            })),
            _ => None,
        };
        requests.push(pb::CheckStreamRequest {
            request_id: format!("req-{i}"),
            check,
        });
    }
    let responses: Vec<pb::CheckStreamResponse> = matcher
        .check_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(responses.len(), 40);
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.request_id, format!("req-{i}"));
        match (i % 4, response.result.as_ref().unwrap()) {
            (0 | 1, pb::check_stream_response::Result::Response(r)) => {
                assert_eq!(r.verdict, pb::Verdict::Review as i32)
            }
            (2 | 3, pb::check_stream_response::Result::Error(e)) => {
                assert_eq!(e.code, Code::InvalidArgument as i32)
            }
            (kind, other) => panic!("item {i} (kind {kind}) answered {other:?}"),
        }
    }
}

#[tokio::test]
async fn entries_survive_a_restart() {
    let server = TestServer::start().await;
    let mut banks = server.banks().await;
    banks.create_bank(bank("TVEC", pb::Action::Block)).await.unwrap();
    load(&mut banks, "TVEC", vec![entry(BRIDGE_PDQ, "a")]).await;
    drop(banks);
    let dir = server.stop().await;
    let server = TestServer::start_in(dir).await;
    let response = server
        .matcher()
        .await
        .check_hashes(pb::CheckHashesRequest {
            hashes: vec![pdq(&flipped(2))],
            banks: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.verdict, pb::Verdict::Block as i32);
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let server = TestServer::start().await;
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hashsieve.v1.Matcher".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Reflection lists our services, so grpcurl-style tools work without the .proto files.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "hashsieve.v1.Matcher",
        "hashsieve.v1.Banks",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}
