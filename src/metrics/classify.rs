//! Classification tables: a call's `outcome` (from its talk time and reason code) and the snake_case
//! `reason` name of a reason code (the page's codes 0–6 for task types 1–3, ITU-T Q.850 cause names for
//! ITA bidirectional calls). Pure functions over fixed tables; the README's tables are these.

use crate::cec::record::{CallRecord, TaskType};

/// How an ended call turned out; the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Outcome {
    /// The customer talked (talk time above zero), whatever the reason code.
    Answered = 0,
    /// Rang but nobody answered (codes 4, 5; Q.850 18, 19).
    NoAnswer = 1,
    /// The customer's line was busy (Q.850 17).
    Busy = 2,
    /// The customer rejected the call (Q.850 21).
    Rejected = 3,
    /// Hung up before the customer answered (codes 0, 1; Q.850 16, 31 with no talk time).
    Cancelled = 4,
    /// The call could not be set up (codes 2, 3, 6 and any other code; every other Q.850 cause).
    Failed = 5,
    /// No talk time and no usable reason code (none given, or Q.850 0 "N/A").
    Unknown = 6,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Answered,
        Outcome::NoAnswer,
        Outcome::Busy,
        Outcome::Rejected,
        Outcome::Cancelled,
        Outcome::Failed,
        Outcome::Unknown,
    ];
    pub const COUNT: usize = 7;

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The outcome of an ended call of `task_type`.
pub fn outcome(task_type: TaskType, record: &CallRecord) -> Outcome {
    if record.customer_talk_seconds().is_some_and(|s| s > 0.0) {
        return Outcome::Answered;
    }
    let Some(code) = record.reason_code else {
        return Outcome::Unknown;
    };
    if task_type == TaskType::ItaBidirectional {
        match code {
            0 => Outcome::Unknown,
            16 | 31 => Outcome::Cancelled,
            17 => Outcome::Busy,
            18 | 19 => Outcome::NoAnswer,
            21 => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    } else {
        match code {
            0 | 1 => Outcome::Cancelled,
            4 | 5 => Outcome::NoAnswer,
            _ => Outcome::Failed,
        }
    }
}

/// The `reason` label for a reason code of a call of `task_type`; `"other"` for a code outside the
/// table that applies.
pub fn reason_name(task_type: TaskType, code: u16) -> &'static str {
    if task_type == TaskType::ItaBidirectional {
        q850_name(code)
    } else {
        match code {
            0 => "called_party_hung_up",
            1 => "calling_party_hung_up",
            2 => "calling_party_call_failed",
            3 => "called_party_call_failed",
            4 => "calling_party_no_answer",
            5 => "called_party_no_answer",
            6 => "call_initiation_failed",
            _ => "other",
        }
    }
}

/// Whether `code` is in the table that names the reason codes of `task_type` (so it always keeps its
/// own `cec_call_end_reasons_total` series, whatever `--metrics.max-unknown-reason-codes` says).
pub fn is_known_reason(task_type: TaskType, code: u16) -> bool {
    reason_name(task_type, code) != "other"
}

/// The Q.850 cause name for the codes of the vendor's Table 5.
pub fn q850_name(code: u16) -> &'static str {
    Q850.binary_search_by_key(&code, |&(c, _)| c).map(|i| Q850[i].1).unwrap_or("other")
}

/// Table 5 of the vendor's page, named after ITU-T Q.850; sorted by code.
pub const Q850: &[(u16, &str)] = &[
    (0, "not_applicable"),
    (1, "unallocated_number"),
    (2, "no_route_to_transit_network"),
    (3, "no_route_to_destination"),
    (4, "send_special_information_tone"),
    (5, "misdialled_trunk_prefix"),
    (6, "channel_unacceptable"),
    (7, "call_awarded_in_established_channel"),
    (8, "preemption"),
    (9, "preemption_circuit_reserved"),
    (16, "normal_clearing"),
    (17, "user_busy"),
    (18, "no_user_responding"),
    (19, "no_answer"),
    (20, "subscriber_absent"),
    (21, "call_rejected"),
    (22, "number_changed"),
    (23, "redirection_to_new_destination"),
    (25, "exchange_routing_error"),
    (26, "non_selected_user_clearing"),
    (27, "destination_out_of_order"),
    (28, "invalid_number_format"),
    (29, "facility_rejected"),
    (30, "response_to_status_enquiry"),
    (31, "normal_unspecified"),
    (34, "no_circuit_channel_available"),
    (38, "network_out_of_order"),
    (39, "permanent_frame_mode_connection_out_of_service"),
    (40, "permanent_frame_mode_connection_operational"),
    (41, "temporary_failure"),
    (42, "switching_equipment_congestion"),
    (43, "access_information_discarded"),
    (44, "requested_circuit_channel_not_available"),
    (46, "precedence_call_blocked"),
    (47, "resource_unavailable"),
    (49, "quality_of_service_not_available"),
    (50, "requested_facility_not_subscribed"),
    (53, "outgoing_calls_barred_within_cug"),
    (55, "incoming_calls_barred_within_cug"),
    (57, "bearer_capability_not_authorized"),
    (58, "bearer_capability_not_available"),
    (62, "inconsistency_in_outgoing_information_element"),
    (63, "service_or_option_not_available"),
    (65, "bearer_capability_not_implemented"),
    (66, "channel_type_not_implemented"),
    (69, "requested_facility_not_implemented"),
    (70, "only_restricted_digital_information_available"),
    (79, "service_or_option_not_implemented"),
    (81, "invalid_call_reference_value"),
    (82, "identified_channel_does_not_exist"),
    (83, "suspended_call_exists_but_call_identity_does_not"),
    (84, "call_identity_in_use"),
    (85, "no_call_suspended"),
    (86, "call_identity_has_been_cleared"),
    (87, "user_not_member_of_cug"),
    (88, "incompatible_destination"),
    (90, "non_existent_cug"),
    (91, "invalid_transit_network_selection"),
    (95, "invalid_message"),
    (96, "mandatory_information_element_missing"),
    (97, "message_type_not_implemented"),
    (98, "message_not_compatible_with_call_state_or_not_implemented"),
    (99, "information_element_not_implemented"),
    (100, "invalid_information_element_contents"),
    (101, "message_not_compatible_with_call_state"),
    (102, "recovery_on_timer_expiry"),
    (103, "parameter_not_implemented"),
    (110, "message_with_unrecognized_parameter_discarded"),
    (111, "protocol_error"),
    (127, "interworking_unspecified"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(talk: Option<f64>, reason: Option<u16>) -> CallRecord {
        CallRecord { talk_s: talk, reason_code: reason, ..Default::default() }
    }

    #[test]
    fn talk_time_means_answered_whatever_the_code() {
        for t in TaskType::ALL {
            assert_eq!(outcome(t, &ended(Some(26.0), Some(1))), Outcome::Answered);
            assert_eq!(outcome(t, &ended(Some(1.0), Some(17))), Outcome::Answered);
        }
    }

    #[test]
    fn page_codes_for_task_types_one_to_three() {
        let expect = [
            (0, Outcome::Cancelled),
            (1, Outcome::Cancelled),
            (2, Outcome::Failed),
            (3, Outcome::Failed),
            (4, Outcome::NoAnswer),
            (5, Outcome::NoAnswer),
            (6, Outcome::Failed),
            (17, Outcome::Failed),
            (1001, Outcome::Failed),
        ];
        for t in
            [TaskType::CecBidirectional, TaskType::AnonymousOutbound, TaskType::VoiceNotification, TaskType::Unknown]
        {
            for (code, want) in expect {
                assert_eq!(outcome(t, &ended(Some(0.0), Some(code))), want, "{t:?} {code}");
            }
            assert_eq!(outcome(t, &ended(None, None)), Outcome::Unknown);
        }
    }

    #[test]
    fn q850_causes_for_ita() {
        let ita = TaskType::ItaBidirectional;
        let expect = [
            (16, Outcome::Cancelled),
            (31, Outcome::Cancelled),
            (17, Outcome::Busy),
            (18, Outcome::NoAnswer),
            (19, Outcome::NoAnswer),
            (21, Outcome::Rejected),
            (0, Outcome::Unknown),
            (1, Outcome::Failed),
            (38, Outcome::Failed),
            (127, Outcome::Failed),
            (4000, Outcome::Failed),
        ];
        for (code, want) in expect {
            assert_eq!(outcome(ita, &ended(Some(0.0), Some(code))), want, "{code}");
        }
        assert_eq!(outcome(ita, &ended(None, None)), Outcome::Unknown);
    }

    #[test]
    fn reason_names() {
        let ita = TaskType::ItaBidirectional;
        assert_eq!(reason_name(ita, 16), "normal_clearing");
        assert_eq!(reason_name(ita, 17), "user_busy");
        assert_eq!(reason_name(ita, 18), "no_user_responding");
        assert_eq!(reason_name(ita, 19), "no_answer");
        assert_eq!(reason_name(ita, 21), "call_rejected");
        assert_eq!(reason_name(ita, 38), "network_out_of_order");
        assert_eq!(reason_name(ita, 24), "other");
        assert_eq!(reason_name(ita, 65535), "other");
        assert_eq!(reason_name(TaskType::CecBidirectional, 5), "called_party_no_answer");
        assert_eq!(reason_name(TaskType::VoiceNotification, 6), "call_initiation_failed");
        assert_eq!(reason_name(TaskType::Unknown, 16), "other");
    }

    #[test]
    fn known_reasons_are_the_tables_codes() {
        let ita = TaskType::ItaBidirectional;
        assert_eq!((0..=u16::MAX).filter(|&c| is_known_reason(ita, c)).count(), Q850.len());
        for t in
            [TaskType::CecBidirectional, TaskType::AnonymousOutbound, TaskType::VoiceNotification, TaskType::Unknown]
        {
            let known: Vec<u16> = (0..=u16::MAX).filter(|&c| is_known_reason(t, c)).collect();
            assert_eq!(known, vec![0, 1, 2, 3, 4, 5, 6], "{t:?}");
        }
    }

    #[test]
    fn q850_table_is_sorted_unique_and_snake_case() {
        assert!(Q850.windows(2).all(|w| w[0].0 < w[1].0));
        for (_, name) in Q850 {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()), "{name}");
        }
        // Every code of the vendor's Table 5 is named.
        let table5 = [
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 27, 28, 29, 30, 31, 34, 38, 39, 40,
            41, 42, 43, 44, 46, 47, 49, 50, 53, 55, 57, 58, 62, 63, 65, 66, 69, 70, 79, 81, 82, 83, 84, 85, 86, 87, 88,
            90, 91, 95, 96, 97, 98, 99, 100, 101, 102, 103, 110, 111, 127,
        ];
        let codes: Vec<u16> = Q850.iter().map(|&(c, _)| c).collect();
        assert_eq!(codes, table5);
    }
}
