"""A worker's receipts over a period, as a Merkle tree (issue 24): the root a payout's export
carries per worker, and the route an owner gets the tree and the path of a receipt from.

The leaves are the receipts the collector keeps, one per window (collector/uptime/windows.py:
the last receipt of a window stands for it), of the windows and records that overlap the
period, in the order and form of ``protocol.receipts.leaves`` (RFC 6962 hashing,
protocol/merkle.py). A record that spans the period's start or end is in both periods'
trees: its receipt proves uptime in each. So an auditor holding the receipts recomputes the
root, and the uptime they prove, without the collector's database; and an owner shows that
a receipt their agent kept is the one a payout counted, with its audit path.

A window whose last answer never reached the agent (a lost response) ends in a receipt the
owner does not hold: their receipt of that window is then an earlier one, valid, but not a
leaf. The route answers the leaf itself, which the owner can then keep.
"""

import hmac
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated

import msgspec
from flask import Blueprint, Response, request
from msgspec import Meta

from collector.errors import ApiError
from collector.identity.access import ensure_wallet
from collector.money.report_routes import DEFAULT_PERIOD, PERIOD
from collector.money.reports import PeriodAnswer, period_arg
from collector.store import models
from collector.store.models import OpenWindow, UptimeRecord
from collector.uptime.receipts import SignedReceipt as ReceiptAnswer
from collector.web.api import wallet
from collector.web.schema import OWNER, WALLET_IN_PATH, Answer, Reply, Wallet, answer, operation
from collector.web.schema import query as query_parameter
from protocol import ProtocolError, merkle
from protocol.periods import Period
from protocol.receipts import SignedReceipt, leaves
from protocol.times import utcnow

# Wallets read per query when a payout's trees are built for a fleet.
BATCH = 500
_SHA256_HEX = "^[0-9a-f]{64}$"


@dataclass(frozen=True)
class Tree:
    """One worker's receipts over a period, as leaves in order, and their root."""

    receipts: list[SignedReceipt]
    root: bytes

    @classmethod
    def of(cls, receipts: list[SignedReceipt]) -> "Tree":
        # As protocol.receipts.leaves orders them: each distinct receipt once, by time.
        distinct = {r.leaf(): r for r in receipts}
        ordered = [distinct[leaf] for leaf in leaves(distinct.values())]
        return cls(ordered, merkle.root([r.leaf() for r in ordered]))

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    def index_of(self, heartbeat_sha256: str) -> int | None:
        for index, signed in enumerate(self.receipts):
            if hmac.compare_digest(signed.receipt.heartbeat_sha256, heartbeat_sha256):
                return index
        return None


def trees(wallets: list[str], period: Period) -> dict[str, Tree]:
    """The trees of ``wallets`` over ``period`` (a worker without receipts: the empty tree),
    read ``BATCH`` wallets per query."""
    kept: defaultdict[str, list[SignedReceipt]] = defaultdict(list)
    for first in range(0, len(wallets), BATCH):
        batch = wallets[first : first + BATCH]
        for model, start, end in (
            (UptimeRecord, UptimeRecord.time_from, UptimeRecord.time_to),
            (OpenWindow, OpenWindow.start_time, OpenWindow.end_time),
        ):
            rows = (
                model.select(model.worker, model.receipt)
                .where(
                    model.worker.in_(batch)
                    & (end >= period.start)
                    & (start < period.end)
                    & model.receipt.is_null(False)
                )
                .tuples()
            )
            for address, text in rows:
                kept[address].append(_read(text))
    return {address: Tree.of(kept[address]) for address in wallets}


def _read(text: str) -> SignedReceipt:
    try:
        return SignedReceipt.from_json(json.loads(text))
    except (ProtocolError, ValueError) as exc:
        # Written by this collector in the heartbeat's transaction: never expected.
        raise RuntimeError(f"a stored receipt cannot be read: {exc}") from None


def recorded_root(address: str, period: Period) -> str | None:
    """The root this worker's payment of the payout recorded for exactly this period holds."""
    payment = (
        models.Payment.select(models.Payment.receipts_root)
        .join(models.Payout)
        .where((models.Payout.period == period.label) & (models.Payment.creator == address))
        .first()
    )
    return None if payment is None else payment.receipts_root


# --- HTTP -------------------------------------------------------------------------------------

bp = Blueprint("receipt_trees", __name__, url_prefix="/reports")

Sha256Hex = Annotated[str, Meta(pattern=_SHA256_HEX)]


class AuditPath(Answer):
    """Where one receipt is in the tree: RFC 6962's audit path, nearest sibling first."""

    index: Annotated[int, Meta(ge=0)]
    size: Annotated[int, Meta(ge=1)]
    path: list[Sha256Hex]


class ReceiptTree(Answer):
    period: PeriodAnswer
    walletAddress: Wallet  # noqa: N815 - the API's names
    root: Annotated[
        str,
        Meta(
            pattern=_SHA256_HEX,
            description="RFC 6962 Merkle root over the receipts' leaves (canonical body, then "
            "the 64 signature bytes), hex",
        ),
    ]
    recordedRoot: Annotated[  # noqa: N815
        str | None,
        Meta(description="the root the payout recorded for exactly this period holds, if any"),
    ]
    receipts: list[ReceiptAnswer]
    proof: AuditPath | None


@bp.get("/workers/<address>/receipts")
@operation(
    summary="A worker's receipts over a period, their Merkle root, and a receipt's audit path",
    description="The leaves of the tree whose root a payout's export carries for the worker: "
    "the last receipt of each window that overlaps the period, by heartbeat time. With "
    "heartbeatSha256, the audit path of the receipt of that heartbeat (404 when it is not a "
    "leaf: an earlier receipt of a window stands for it only until the window's last).",
    security=OWNER,
    parameters=(
        WALLET_IN_PATH,
        PERIOD,
        query_parameter(
            "heartbeatSha256",
            {"type": "string", "pattern": _SHA256_HEX},
            "the receipt whose audit path to answer",
        ),
    ),
    replies={200: Reply("The tree", ReceiptTree)},
    errors=(400, 401, 403, 404, 503),
)
def receipt_tree(address: str) -> Response:
    address = wallet(address, "wallet")
    ensure_wallet(address)
    period = period_arg(request.args.get("period", DEFAULT_PERIOD), utcnow())
    if models.Worker.get_or_none(models.Worker.wallet_address == address) is None:
        raise ApiError(404, f"no worker {address}")
    tree = trees([address], period)[address]
    proof = None
    sought = request.args.get("heartbeatSha256")
    if sought is not None:
        proof = _proof(tree, sought)
    return answer(
        ReceiptTree(
            period=PeriodAnswer.of(period),
            walletAddress=address,
            root=tree.root_hex,
            recordedRoot=recorded_root(address, period),
            receipts=[msgspec.convert(r.to_json(), ReceiptAnswer) for r in tree.receipts],
            proof=proof,
        )
    )


def _proof(tree: Tree, sought: str) -> AuditPath:
    if len(sought) != 64 or any(c not in "0123456789abcdef" for c in sought):
        raise ApiError(400, "heartbeatSha256 must be 64 lower-case hex digits")
    index = tree.index_of(sought)
    if index is None:
        raise ApiError(
            404,
            f"no receipt of the heartbeat {sought} is a leaf of this tree: a window's last "
            "receipt stands for it (see receipts)",
        )
    path = merkle.proof([r.leaf() for r in tree.receipts], index)
    return AuditPath(index=index, size=len(tree.receipts), path=[p.hex() for p in path])
