//! Commit confirmations for bar gateways (`gw/ack/{gateway_id}`, BRIEF §5 and §7,
//! `docs/contract.md` "Gateway forwarding").
//!
//! A gateway deletes a queued message only when the server confirms it is committed, so a
//! confirmation must never cover a message that is not in the database (or in dead letters).
//! This module is the pure bookkeeping for that promise: which `gseq`s one batch committed, per
//! gateway, as sorted, merged inclusive ranges, split into contract-sized `GatewayAck`
//! messages. Ranges rather than a watermark: with shared subscriptions several replicas commit
//! interleaved parts of one gateway's stream, and each can say exactly what it committed.
//! It does no I/O; the pipeline feeds it after each commit and publishes what it returns.

use std::collections::HashMap;

use scalesense_proto::payload::{GseqRanges, MAX_ACK_RANGES};
use scalesense_proto::{CONTRACT_VERSION, GatewayAck, GatewayId};

/// The committed `gseq`s of one batch as sorted, merged, inclusive `[first, last]` ranges.
pub fn committed_ranges(gseqs: impl IntoIterator<Item = u64>) -> Vec<[u64; 2]> {
    let mut sorted: Vec<u64> = gseqs.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    for g in sorted {
        match ranges.last_mut() {
            Some(last) if last[1].checked_add(1) == Some(g) => last[1] = g,
            _ => ranges.push([g, g]),
        }
    }
    ranges
}

/// Groups the `(gateway, gseq)` pairs one batch committed into ranges per gateway.
pub fn ranges_by_gateway(
    committed: impl IntoIterator<Item = (GatewayId, u64)>,
) -> HashMap<GatewayId, Vec<[u64; 2]>> {
    let mut by_gateway: HashMap<GatewayId, Vec<u64>> = HashMap::new();
    for (gateway, gseq) in committed {
        by_gateway.entry(gateway).or_default().push(gseq);
    }
    by_gateway
        .into_iter()
        .map(|(gateway, gseqs)| (gateway, committed_ranges(gseqs)))
        .collect()
}

/// The `GatewayAck` messages that confirm `ranges`: at most [`MAX_ACK_RANGES`] ranges each, in
/// order. Empty input gives no message (an ack must confirm at least one range).
pub fn ack_messages(ranges: &[[u64; 2]]) -> Vec<GatewayAck> {
    ranges
        .chunks(MAX_ACK_RANGES)
        .map(|chunk| {
            let mut out = GseqRanges::new();
            for range in chunk {
                // Cannot fail: a chunk holds at most MAX_ACK_RANGES ranges.
                let _ = out.push(*range);
            }
            GatewayAck {
                v: CONTRACT_VERSION,
                ranges: out,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(s: &str) -> GatewayId {
        GatewayId::try_from(s).unwrap()
    }

    #[test]
    fn ranges_are_sorted_merged_and_deduplicated() {
        assert_eq!(committed_ranges([]), Vec::<[u64; 2]>::new());
        assert_eq!(committed_ranges([7]), vec![[7, 7]]);
        assert_eq!(
            committed_ranges([5, 3, 4, 10, 9, 4, 1, u64::MAX]),
            vec![[1, 1], [3, 5], [9, 10], [u64::MAX, u64::MAX]]
        );
    }

    #[test]
    fn ranges_group_per_gateway() {
        let by = ranges_by_gateway([(gw("a"), 2), (gw("b"), 9), (gw("a"), 1), (gw("a"), 4)]);
        assert_eq!(by.len(), 2);
        assert_eq!(by[&gw("a")], vec![[1, 2], [4, 4]]);
        assert_eq!(by[&gw("b")], vec![[9, 9]]);
    }

    #[test]
    fn acks_are_split_to_the_contract_limit_and_valid() {
        assert!(ack_messages(&[]).is_empty());
        // Every other gseq: 70 single-gseq ranges need three messages.
        let ranges = committed_ranges((0..70u64).map(|i| 1 + 2 * i));
        assert_eq!(ranges.len(), 70);
        let acks = ack_messages(&ranges);
        assert_eq!(
            acks.iter().map(|a| a.ranges.len()).collect::<Vec<_>>(),
            vec![MAX_ACK_RANGES, MAX_ACK_RANGES, 70 - 2 * MAX_ACK_RANGES]
        );
        let confirmed: Vec<u64> = acks.iter().flat_map(GatewayAck::gseqs).collect();
        assert_eq!(confirmed, (0..70u64).map(|i| 1 + 2 * i).collect::<Vec<_>>());
        for ack in &acks {
            let bytes = scalesense_proto::to_vec(ack).unwrap();
            assert_eq!(&scalesense_proto::decode_gateway_ack(&bytes).unwrap(), ack);
        }
        assert_eq!(
            scalesense_proto::to_vec(&ack_messages(&[[1201, 1300], [1302, 1302]])[0]).unwrap(),
            br#"{"v":1,"ranges":[[1201,1300],[1302,1302]]}"#
        );
    }
}
