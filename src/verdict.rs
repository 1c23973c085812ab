//! The verdict of a check: what the matching banks, together, ask for.

use serde::{Deserialize, Serialize};

use crate::bank::{Action, BankName};
use crate::hash::{HashValue, Transform, View};

/// The overall answer of a check. Stored in the match log by variant index: add variants at
/// the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    NoMatch,
    Review,
    Block,
    /// An allow bank matched and overrode a block or review match.
    Allowed,
}

/// One stored hash within its bank's threshold of a query hash. Stored in the match log
/// (postcard, fields in order): add fields at the end, with defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub bank: BankName,
    pub entry_id: String,
    /// The stored hash.
    pub hash: HashValue,
    pub distance: u32,
    /// The bank's labels, then the entry's, without duplicates.
    pub labels: Vec<String>,
    pub action: Action,
    pub source: String,
    /// Which part of the upload matched …
    pub view: View,
    /// … turned which way.
    pub transform: Transform,
    /// The upload's PDQ quality is below the bank's minimum: flat pictures (a blank frame, a
    /// plain background) sit near each other, so such a match deserves a second look.
    pub low_quality: bool,
}

/// The strongest action among the matches (`block` > `review`), unless an allow bank matched
/// too: allow banks hold known false positives, so they override the rest. An allow match with
/// nothing to override is no match at all.
pub fn decide(matches: &[Match]) -> Verdict {
    let has = |action: Action| matches.iter().any(|m| m.action == action);
    let strongest = if has(Action::Block) {
        Verdict::Block
    } else if has(Action::Review) {
        Verdict::Review
    } else {
        Verdict::NoMatch
    };
    if strongest != Verdict::NoMatch && has(Action::Allow) {
        Verdict::Allowed
    } else {
        strongest
    }
}

/// Orders matches nearest first, then by bank and entry, so responses are deterministic.
pub fn sort_matches(matches: &mut [Match]) {
    matches.sort_by(|a, b| {
        (a.distance, &a.bank, &a.entry_id, a.hash, a.view, a.transform).cmp(&(
            b.distance,
            &b.bank,
            &b.entry_id,
            b.hash,
            b.view,
            b.transform,
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Algorithm;

    fn hit(action: Action, distance: u32) -> Match {
        Match {
            bank: BankName::new("B").unwrap(),
            entry_id: "e".into(),
            hash: HashValue::from_bytes(Algorithm::Md5, &[0; 16]).unwrap(),
            distance,
            labels: vec![],
            action,
            source: String::new(),
            view: View::Whole,
            transform: Transform::Original,
            low_quality: false,
        }
    }

    fn check(actions: &[Action], expected: Verdict) {
        let matches: Vec<Match> = actions.iter().map(|a| hit(*a, 0)).collect();
        assert_eq!(decide(&matches), expected, "{actions:?}");
    }

    #[test]
    fn verdicts() {
        use Action::*;
        check(&[], Verdict::NoMatch);
        check(&[Review], Verdict::Review);
        check(&[Review, Block], Verdict::Block);
        check(&[Block, Allow], Verdict::Allowed);
        check(&[Review, Allow], Verdict::Allowed);
        check(&[Allow], Verdict::NoMatch);
    }

    #[test]
    fn matches_sort_nearest_first() {
        let mut matches = vec![
            hit(Action::Block, 9),
            hit(Action::Review, 2),
            hit(Action::Allow, 5),
        ];
        sort_matches(&mut matches);
        let distances: Vec<u32> = matches.iter().map(|m| m.distance).collect();
        assert_eq!(distances, vec![2, 5, 9]);
    }
}
