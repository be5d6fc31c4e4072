/* SPDX-License-Identifier: GPL-2.0 */
/* Drop reasons: Cilium's numbers (pkg/monitor/api drop reasons) so flows read the same as Hubble's.
 * Only the reasons this datapath emits are listed; 0 means "forwarded" in the metrics map. */
#ifndef MEMBRANE_DROP_H
#define MEMBRANE_DROP_H

#define REASON_FORWARDED          0
#define DROP_INVALID_SMAC         130 /* "Invalid source mac" */
#define DROP_INVALID_SIP          132 /* "Invalid source ip" */
#define DROP_POLICY               133 /* "Policy denied" */
#define DROP_INVALID              134 /* "Invalid packet" */
#define DROP_CT_INVALID_HDR       135 /* "CT: Truncated or invalid header" */
#define DROP_UNSUPPORTED_L2       166 /* "Unsupported L2 protocol" */
#define DROP_POLICY_DENY          181 /* "Policy denied by denylist" */

#endif /* MEMBRANE_DROP_H */
