#!/usr/bin/env python3
"""kafka_txn_proxy: a Kafka-protocol proxy that gives librdkafka's mock cluster real transactions.

librdkafka 2.0.2's mock broker (tests/tools/mock_broker.cpp) accepts transactional producers, but
it never fences an older producer that uses the same transactional.id and it writes no
commit/abort markers, so a read_committed consumer also sees aborted and still-open transactions.
This proxy sits between the clients and the mock brokers and adds what is missing by rewriting the
protocol (python3 standard library only):

- Fencing. Every successful InitProducerId grants (producer id, epoch) to a transactional.id. A
  grant aborts the open transaction of every earlier grant of that id and fences it: from then on
  a Produce of the fenced producer is answered INVALID_PRODUCER_EPOCH (47) per partition, and its
  AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn and InitProducerId epoch bumps are
  answered PRODUCER_FENCED (90), all by the proxy: none of them reaches the mock. An EndTxn(commit)
  whose transaction was aborted by a fence while the request was on its way is answered
  PRODUCER_FENCED too. (The 2.0.2 mock hands out a new random producer id with epoch 0 on every
  InitProducerId without a producer id, and bumps the epoch of the same id on a KIP-360 request;
  both are handled.)
- Transaction timeouts. A transaction still open transaction_timeout_ms (from its InitProducerId)
  after it began is aborted and its producer fenced, as a real coordinator does.
- read_committed. Fetch responses to isolation_level=1 requests get last_stable_offset = the first
  offset of the oldest open transaction in the partition (else the high watermark), lose every
  batch from there on, and have each batch of an aborted transaction replaced by an empty control
  batch with the same offsets (no records, CRC-32C recomputed), which clients step over. No
  aborted_transactions entries are returned. A read_committed Fetch that would come back empty
  only because of an open transaction is held, up to its max_wait_ms, until some transaction
  ends, like a broker holds a fetch that has nothing to return. ListOffsets "latest" with
  isolation_level=1 answers the last stable offset.
- Routing. ApiVersions answers are capped to versions the proxy parses, and Metadata and
  FindCoordinator answers name the proxy's listeners, so every client connection comes through it.

A batch is attributed to its transaction by (producer id, epoch, topic, partition, base sequence),
recorded as the Produce request passes, so it is classified correctly even when the Produce
response never arrives. Records written without transactions, read_uncommitted fetches and every
other API pass unchanged. A message the proxy cannot parse is forwarded unchanged (and reported on
stderr); requests and responses are relayed in order per connection.

Usage: kafka_txn_proxy.py --upstream HOST:PORT[,HOST:PORT...] [--log FILE]
Listens on 127.0.0.1 with one port per upstream broker, prints exactly one line
"BOOTSTRAP 127.0.0.1:P1,127.0.0.1:P2,..." (in --upstream order) and serves until SIGTERM or SIGINT
(exit 0). A broker address that only appears in Metadata gets a listener of its own when first
seen. --log appends one JSON object per line for each transaction decision: "init", "fence",
"commit", "abort" and "reject" events (see DecisionLog).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import socket
import struct
import sys
import time
from typing import Any, Awaitable, Callable, Optional, Union

# ----------------------------------------------------------------------------- protocol constants

PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
FIND_COORDINATOR = 10
API_VERSIONS = 18
INIT_PRODUCER_ID = 22
ADD_PARTITIONS_TO_TXN = 24
ADD_OFFSETS_TO_TXN = 25
END_TXN = 26
TXN_OFFSET_COMMIT = 28

API_NAMES = {
    PRODUCE: "Produce", FETCH: "Fetch", LIST_OFFSETS: "ListOffsets", METADATA: "Metadata",
    FIND_COORDINATOR: "FindCoordinator", API_VERSIONS: "ApiVersions", INIT_PRODUCER_ID: "InitProducerId",
    ADD_PARTITIONS_TO_TXN: "AddPartitionsToTxn", ADD_OFFSETS_TO_TXN: "AddOffsetsToTxn", END_TXN: "EndTxn",
    TXN_OFFSET_COMMIT: "TxnOffsetCommit",
}

# The highest version of each API whose layout this proxy parses. All are non-flexible except
# InitProducerId 2..4 (parsed too, so that librdkafka keeps its KIP-360 epoch bumps).
VERSION_CAPS = {
    PRODUCE: 8, FETCH: 11, LIST_OFFSETS: 5, METADATA: 8, FIND_COORDINATOR: 2, INIT_PRODUCER_ID: 4,
    ADD_PARTITIONS_TO_TXN: 2, ADD_OFFSETS_TO_TXN: 2, END_TXN: 2, TXN_OFFSET_COMMIT: 2,
}

INVALID_PRODUCER_EPOCH = 47
PRODUCER_FENCED = 90

READ_COMMITTED = 1
LATEST_TIMESTAMP = -1

MAX_FRAME_BYTES = 1 << 30


def request_header_is_flexible(api_key: int, version: int) -> bool:
    """Whether the request header carries tagged fields (header v2), for the APIs parsed here."""
    return (api_key == API_VERSIONS and version >= 3) or (api_key == INIT_PRODUCER_ID and version >= 2)


def response_header_is_flexible(api_key: int, version: int) -> bool:
    """ApiVersions answers always use header v0, whatever their version."""
    return api_key == INIT_PRODUCER_ID and version >= 2


# ----------------------------------------------------------------------------- wire primitives

class ProtocolError(Exception):
    """A message does not have the layout its API key and version promise."""


class Reader:
    """Reads Kafka primitive types from bytes; raises ProtocolError when a read passes the end."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: Optional[int] = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _unpack(self, fmt: str, size: int) -> int:
        if self.pos + size > self.end:
            raise ProtocolError("read of %d bytes past the end at %d" % (size, self.pos))
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += size
        return value

    def i8(self) -> int:
        return self._unpack(">b", 1)

    def i16(self) -> int:
        return self._unpack(">h", 2)

    def i32(self) -> int:
        return self._unpack(">i", 4)

    def i64(self) -> int:
        return self._unpack(">q", 8)

    def raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise ProtocolError("field of %d bytes does not fit at %d" % (size, self.pos))
        value = bytes(self.data[self.pos:self.pos + size])
        self.pos += size
        return value

    def string(self) -> Optional[str]:
        """A nullable int16-length string. Bytes that are not UTF-8 survive a round trip."""
        size = self.i16()
        return None if size < 0 else self.raw(size).decode("utf-8", "surrogateescape")

    def nullable_bytes(self) -> Optional[bytes]:
        size = self.i32()
        return None if size < 0 else self.raw(size)

    def uvarint(self) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self._unpack(">B", 1)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ProtocolError("unsigned varint longer than 5 bytes at %d" % self.pos)

    def compact_string(self) -> Optional[str]:
        size = self.uvarint() - 1
        return None if size < 0 else self.raw(size).decode("utf-8", "surrogateescape")

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.raw(self.uvarint())

    def array_length(self) -> int:
        """An int32 element count; a null array counts as empty."""
        count = self.i32()
        if count > self.remaining():
            raise ProtocolError("array of %d elements in %d bytes" % (count, self.remaining()))
        return max(count, 0)

    def compact_array_length(self) -> int:
        count = self.uvarint() - 1
        if count > self.remaining():
            raise ProtocolError("compact array of %d elements in %d bytes" % (count, self.remaining()))
        return max(count, 0)

    def expect_end(self) -> None:
        if self.pos != self.end:
            raise ProtocolError("%d unexpected bytes at the end" % (self.end - self.pos))


class Writer:
    """Builds a Kafka message from primitive types."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def i8(self, value: int) -> "Writer":
        self.buf += struct.pack(">b", value)
        return self

    def i16(self, value: int) -> "Writer":
        self.buf += struct.pack(">h", value)
        return self

    def i32(self, value: int) -> "Writer":
        self.buf += struct.pack(">i", value)
        return self

    def i64(self, value: int) -> "Writer":
        self.buf += struct.pack(">q", value)
        return self

    def raw(self, data: bytes) -> "Writer":
        self.buf += data
        return self

    def string(self, value: Optional[str]) -> "Writer":
        if value is None:
            return self.i16(-1)
        data = value.encode("utf-8", "surrogateescape")
        return self.i16(len(data)).raw(data)

    def nullable_bytes(self, value: Optional[bytes]) -> "Writer":
        if value is None:
            return self.i32(-1)
        return self.i32(len(value)).raw(value)

    def uvarint(self, value: int) -> "Writer":
        while value >= 0x80:
            self.buf.append((value & 0x7F) | 0x80)
            value >>= 7
        self.buf.append(value)
        return self

    def empty_tagged_fields(self) -> "Writer":
        return self.uvarint(0)

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class Crc32c:
    """CRC-32C (Castagnoli), the checksum of Kafka record batches (magic 2)."""

    _TABLE: tuple = ()

    @classmethod
    def _table(cls) -> tuple:
        if not cls._TABLE:
            table = []
            for index in range(256):
                crc = index
                for _ in range(8):
                    crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
                table.append(crc)
            cls._TABLE = tuple(table)
        return cls._TABLE

    @classmethod
    def of(cls, data: bytes) -> int:
        table = cls._table()
        crc = 0xFFFFFFFF
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


# ----------------------------------------------------------------------------- record batches

ATTR_COMPRESSION_MASK = 0x07
ATTR_TIMESTAMP_TYPE = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
BATCH_HEADER_BYTES = 61        # a magic-2 batch header up to and including recordCount
BATCH_LOG_OVERHEAD = 12        # baseOffset + batchLength


class BatchHeader:
    """One record batch (or old-format message) in a records blob, located but not copied."""

    __slots__ = ("start", "stop", "complete", "base_offset", "partition_leader_epoch", "magic",
                 "attributes", "last_offset_delta", "base_timestamp", "max_timestamp", "producer_id",
                 "producer_epoch", "base_sequence", "record_count")

    def __init__(self, start: int, stop: int, complete: bool, base_offset: Optional[int]) -> None:
        self.start = start
        self.stop = stop
        self.complete = complete
        self.base_offset = base_offset
        self.partition_leader_epoch = 0
        self.magic = -1
        self.attributes = 0
        self.last_offset_delta = 0
        self.base_timestamp = 0
        self.max_timestamp = 0
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1
        self.record_count = 0

    @property
    def has_v2_header(self) -> bool:
        """A magic-2 batch whose whole header is present (its records may be cut off)."""
        return self.magic == 2

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta if self.has_v2_header else self.base_offset

    @property
    def offset_count(self) -> int:
        return self.last_offset_delta + 1 if self.has_v2_header else 1

    @property
    def transactional(self) -> bool:
        """A transactional data batch (not a control batch)."""
        return self.has_v2_header and (self.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL)) == ATTR_TRANSACTIONAL


def split_batches(records: bytes) -> list:
    """The batches of a records blob in order. A Fetch response may end with a partial batch: it is
    returned with complete=False (and a v2 header only if all 61 header bytes are there)."""
    batches = []
    pos = 0
    size = len(records)
    while pos < size:
        left = size - pos
        if left < BATCH_LOG_OVERHEAD:
            base = struct.unpack_from(">q", records, pos)[0] if left >= 8 else None
            batches.append(BatchHeader(pos, size, False, base))
            break
        base_offset, length = struct.unpack_from(">qi", records, pos)
        if length < 0:
            raise ProtocolError("record batch at %d has length %d" % (pos, length))
        stop = pos + BATCH_LOG_OVERHEAD + length
        batch = BatchHeader(pos, min(stop, size), stop <= size, base_offset)
        if left >= BATCH_HEADER_BYTES and records[pos + 16] == 2:
            (batch.partition_leader_epoch, batch.magic, _crc, batch.attributes, batch.last_offset_delta,
             batch.base_timestamp, batch.max_timestamp, batch.producer_id, batch.producer_epoch,
             batch.base_sequence, batch.record_count) = struct.unpack_from(">ibIhiqqqhii", records, pos + 12)
        batches.append(batch)
        pos = min(stop, size)
    return batches


def empty_control_batch(batch: BatchHeader) -> bytes:
    """A batch covering the same offsets as `batch` but holding no records: clients move their
    position past it (librdkafka sets the next fetch offset to its last offset + 1). It is marked a
    control batch because librdkafka then does not take a response that yields no message for a
    too small fetch size (it would grow the size and, at 1 GiB, report MSG_SIZE_TOO_LARGE)."""
    attributes = (batch.attributes & ATTR_TIMESTAMP_TYPE) | ATTR_TRANSACTIONAL | ATTR_CONTROL
    body = struct.pack(">hiqqqhii", attributes, batch.last_offset_delta, batch.base_timestamp,
                       batch.max_timestamp, batch.producer_id, batch.producer_epoch, batch.base_sequence, 0)
    length = 4 + 1 + 4 + len(body)  # partitionLeaderEpoch, magic, crc, then the CRC-covered part
    return struct.pack(">qiibI", batch.base_offset, length, batch.partition_leader_epoch, 2,
                       Crc32c.of(body)) + body


# ----------------------------------------------------------------------------- decision log

class DecisionLog:
    """Appends one JSON object per line for every transaction decision, when a file is given:
      {"event":"init","transactional_id","producer_id","epoch"}
      {"event":"fence","transactional_id","producer_id","epoch","reason":"superseded"|"timeout",
       "by_producer_id","by_epoch"}
      {"event":"commit"|"abort","transactional_id","producer_id","epoch",
       "reason":"end_txn"|"fenced"|"timeout"|"reinit",
       "ranges":[{"topic","partition","first","last"}...]}   (offsets seen in Produce answers)
      {"event":"reject","api","transactional_id","producer_id","epoch","error"}
    Every object also has "time" (Unix seconds)."""

    def __init__(self, path: Optional[str]) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None

    def write(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {"time": round(time.time(), 3), "event": event}
        record.update(fields)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def warn(message: str) -> None:
    """Reports something unexpected on stderr; the proxy carries on."""
    sys.stderr.write("kafka_txn_proxy: %s\n" % message)
    sys.stderr.flush()


# ----------------------------------------------------------------------------- transaction state

OPEN = "open"
COMMITTED = "committed"
ABORTED = "aborted"


class ProducerSession:
    """What one InitProducerId granted: a transactional.id's (producer id, epoch)."""

    def __init__(self, transactional_id: str, producer_id: int, epoch: int, timeout_ms: int) -> None:
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.epoch = epoch
        self.timeout_ms = timeout_ms
        self.fenced = False
        self.current: Optional[Transaction] = None

    def describe(self) -> dict:
        return {"transactional_id": self.transactional_id, "producer_id": self.producer_id, "epoch": self.epoch}


class Transaction:
    """One transaction of a producer session: the batches it sent, where they landed, its end."""

    def __init__(self, session: ProducerSession) -> None:
        self.session = session
        self.state = OPEN
        self.batch_keys: list = []
        self.ranges: dict = {}            # (topic, partition) -> [first offset, last offset]
        self.timer: Optional[asyncio.TimerHandle] = None

    def describe_ranges(self) -> list:
        return [{"topic": tp[0], "partition": tp[1], "first": r[0], "last": r[1]}
                for tp, r in sorted(self.ranges.items())]


class TransactionLedger:
    """The transaction coordinator's view the mock lacks: grants per transactional.id, which
    producers are fenced, which transaction each transactional batch belongs to, and how each
    transaction ended. Committed transactions are forgotten at once (a batch the ledger does not
    know counts as committed); aborted ones are kept up to MAX_ABORTED_BATCHES batches."""

    MAX_ABORTED_BATCHES = 1_000_000

    def __init__(self, decisions: DecisionLog) -> None:
        self._decisions = decisions
        self._sessions: dict = {}             # (producer id, epoch) -> ProducerSession
        self._grants: dict = {}               # transactional.id -> [ProducerSession], oldest first
        self._highest_epoch: dict = {}        # producer id -> highest epoch granted
        self._batches: dict = {}              # (pid, epoch, topic, partition, base sequence) -> Transaction
        self._open_first: dict = {}           # (topic, partition) -> {Transaction: first offset}
        self._aborted: collections.OrderedDict = collections.OrderedDict()
        self._aborted_batch_count = 0
        self._waiters: list = []

    # --- grants and fencing

    def granted(self, transactional_id: str, producer_id: int, epoch: int, timeout_ms: int) -> None:
        """An InitProducerId answer gave (producer_id, epoch) to transactional_id: every earlier
        grant of the id is fenced and its open transaction aborted."""
        key = (producer_id, epoch)
        session = self._sessions.get(key)
        if session is not None and session.transactional_id == transactional_id and not session.fenced:
            # The same grant again (the mock repeated itself): its open transaction ends, as on re-init.
            if session.current is not None:
                self._finish(session.current, ABORTED, "reinit")
            session.timeout_ms = timeout_ms
        else:
            session = ProducerSession(transactional_id, producer_id, epoch, timeout_ms)
            self._sessions[key] = session
            self._grants.setdefault(transactional_id, []).append(session)
        self._highest_epoch[producer_id] = max(epoch, self._highest_epoch.get(producer_id, -1))
        self._decisions.write("init", **session.describe())
        for older in self._grants[transactional_id]:
            if older is not session and not older.fenced:
                self._fence(older, "superseded", session)
        self._notify()

    def rejection(self, transactional_id: Optional[str], producer_id: int, epoch: int) -> Optional[str]:
        """Why a request of (producer_id, epoch) must not reach the mock ("fenced"), or None."""
        session = self._sessions.get((producer_id, epoch))
        if session is not None:
            return "fenced" if session.fenced else None
        highest = self._highest_epoch.get(producer_id)
        if highest is not None and epoch < highest:
            return "fenced"
        return None

    def session(self, producer_id: int, epoch: int) -> Optional[ProducerSession]:
        return self._sessions.get((producer_id, epoch))

    def transactional_id_of(self, producer_id: int, epoch: int) -> Optional[str]:
        session = self._sessions.get((producer_id, epoch))
        return session.transactional_id if session else None

    def _fence(self, session: ProducerSession, reason: str, by: Optional[ProducerSession]) -> None:
        session.fenced = True
        fields = session.describe()
        if by is not None:
            fields.update(by_producer_id=by.producer_id, by_epoch=by.epoch)
        self._decisions.write("fence", reason=reason, **fields)
        if session.current is not None:
            self._finish(session.current, ABORTED, "fenced" if reason == "superseded" else reason)

    # --- transactions

    def transaction_for(self, producer_id: int, epoch: int) -> Optional[Transaction]:
        """The open transaction of a granted, unfenced producer (begun now if none is open);
        None for producers this proxy did not see initialised."""
        session = self._sessions.get((producer_id, epoch))
        if session is None or session.fenced:
            return None
        if session.current is None:
            txn = Transaction(session)
            session.current = txn
            if session.timeout_ms > 0:
                txn.timer = asyncio.get_running_loop().call_later(session.timeout_ms / 1000.0, self._expire, txn)
        return session.current

    def record_batch(self, txn: Transaction, topic: str, partition: int, base_sequence: int) -> None:
        """A Produce request carries this batch of txn (called before it is forwarded)."""
        key = (txn.session.producer_id, txn.session.epoch, topic, partition, base_sequence)
        known = self._batches.get(key)
        if known is txn:
            return
        if known is not None:
            warn("batch %r seen in two transactions; attributing it to the newer" % (key,))
        self._batches[key] = txn
        txn.batch_keys.append(key)

    def record_offsets(self, txn: Transaction, topic: str, partition: int, first: int, last: int) -> None:
        """The mock stored a batch of txn at offsets first..last."""
        tp = (topic, partition)
        span = txn.ranges.get(tp)
        if span is None:
            txn.ranges[tp] = [first, last]
        else:
            span[0] = min(span[0], first)
            span[1] = max(span[1], last)
        if txn.state == OPEN:
            opens = self._open_first.setdefault(tp, {})
            opens[txn] = txn.ranges[tp][0]
            self._notify()

    def ended(self, session: ProducerSession, txn: Optional[Transaction], committed: bool) -> str:
        """The mock accepted an EndTxn that was sent while txn was the session's open transaction.
        Returns the outcome: "committed", "aborted", "empty" (nothing was open), or "fenced" when
        a commit arrives for a transaction that a fence or timeout aborted meanwhile."""
        if txn is None:
            return "fenced" if session.fenced and committed else "empty"
        if txn.state == OPEN:
            self._finish(txn, COMMITTED if committed else ABORTED, "end_txn")
            return txn.state
        if txn.state == ABORTED and committed:
            return "fenced"
        return txn.state

    def _expire(self, txn: Transaction) -> None:
        if txn.state == OPEN:
            # A real coordinator aborts with a bumped epoch: the producer is fenced by its own timeout.
            self._fence(txn.session, "timeout", None)

    def _finish(self, txn: Transaction, state: str, reason: str) -> None:
        txn.state = state
        if txn.timer is not None:
            txn.timer.cancel()
            txn.timer = None
        if txn.session.current is txn:
            txn.session.current = None
        for tp in txn.ranges:
            opens = self._open_first.get(tp)
            if opens is not None:
                opens.pop(txn, None)
                if not opens:
                    del self._open_first[tp]
        if state == COMMITTED:
            for key in txn.batch_keys:
                if self._batches.get(key) is txn:
                    del self._batches[key]
            txn.batch_keys = []
        else:
            self._aborted[txn] = None
            self._aborted_batch_count += len(txn.batch_keys)
            self._forget_old_aborts()
        self._decisions.write("commit" if state == COMMITTED else "abort", reason=reason,
                              ranges=txn.describe_ranges(), **txn.session.describe())
        self._notify()

    def _forget_old_aborts(self) -> None:
        while self._aborted_batch_count > self.MAX_ABORTED_BATCHES and self._aborted:
            oldest, _ = self._aborted.popitem(last=False)
            for key in oldest.batch_keys:
                if self._batches.get(key) is oldest:
                    del self._batches[key]
            self._aborted_batch_count -= len(oldest.batch_keys)
            warn("forgot an aborted transaction of %r: its batches now count as committed" %
                 (oldest.session.transactional_id,))

    # --- queries for readers

    def state_of_batch(self, topic: str, partition: int, batch: BatchHeader) -> str:
        """OPEN, ABORTED or COMMITTED; batches the ledger does not track count as committed."""
        txn = self._batches.get((batch.producer_id, batch.producer_epoch, topic, partition, batch.base_sequence))
        return COMMITTED if txn is None else txn.state

    def first_open_offset(self, topic: str, partition: int) -> Optional[int]:
        opens = self._open_first.get((topic, partition))
        return min(opens.values()) if opens else None

    def next_change(self) -> asyncio.Future:
        """A future that completes at the next change of any transaction's state or offsets."""
        if len(self._waiters) > 64:
            self._waiters = [w for w in self._waiters if not w.done()]
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# ----------------------------------------------------------------------------- request routing

class RequestHeader:
    """The header of a request frame (without its size prefix)."""

    __slots__ = ("api_key", "api_version", "correlation_id", "client_id", "body")

    def __init__(self, frame: bytes) -> None:
        reader = Reader(frame)
        self.api_key = reader.i16()
        self.api_version = reader.i16()
        self.correlation_id = reader.i32()
        self.client_id = reader.string()
        if request_header_is_flexible(self.api_key, self.api_version):
            reader.skip_tagged_fields()
        self.body = reader.pos

    @property
    def name(self) -> str:
        return "%s v%d" % (API_NAMES.get(self.api_key, "api %d" % self.api_key), self.api_version)


class Exchange:
    """A forwarded request whose answer the proxy wants to read: its handler and what it noted."""

    __slots__ = ("handler", "header", "context")

    def __init__(self, handler: "Handler", header: RequestHeader, context: Any = None) -> None:
        self.handler = handler
        self.header = header
        self.context = context


class Verdict:
    """What to do with a request: forward it, noting `exchange` (or None) to read its answer by
    and whether an answer comes at all (Produce with acks=0 gets none); answer it here with
    `answer` instead of forwarding it; or drop it (a rejected request that wants no answer)."""

    __slots__ = ("forward", "exchange", "answer", "expects_answer")

    def __init__(self, forward: bool, exchange: Optional[Exchange], answer: Optional[bytes],
                 expects_answer: bool) -> None:
        self.forward = forward
        self.exchange = exchange
        self.answer = answer
        self.expects_answer = expects_answer

    @classmethod
    def relay(cls, exchange: Optional[Exchange] = None, expects_answer: bool = True) -> "Verdict":
        return cls(True, exchange, None, expects_answer)

    @classmethod
    def reply(cls, answer: bytes) -> "Verdict":
        return cls(False, None, answer, True)

    @classmethod
    def drop(cls) -> "Verdict":
        return cls(False, None, None, False)


def response_body(exchange: Exchange, frame: bytes) -> Reader:
    """A reader positioned after the response header."""
    reader = Reader(frame, 4)
    if response_header_is_flexible(exchange.header.api_key, exchange.header.api_version):
        reader.skip_tagged_fields()
    return reader


def response_header(header: RequestHeader) -> Writer:
    """A Writer holding the response header for a request, to append a synthesized body to."""
    writer = Writer().i32(header.correlation_id)
    if response_header_is_flexible(header.api_key, header.api_version):
        writer.empty_tagged_fields()
    return writer


class Handler:
    """Reads one API's requests and answers. request() returns a Verdict; response() returns the
    answer to relay, or an awaitable of it. Both may raise; the caller then relays unchanged."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        return Verdict.relay(Exchange(self, header))

    def response(self, exchange: Exchange, frame: bytes) -> Union[bytes, Awaitable[bytes]]:
        return frame


class ApiVersionsHandler(Handler):
    """Caps the versions the brokers announce to the ones this proxy parses."""

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        if Reader(frame, 4).i16() != 0:
            # An error answer (UNSUPPORTED_VERSION: the client retries with an older version)
            # lists at most ApiVersions itself; the 2.0.2 mock's is not even well-formed.
            return frame
        # A broker that does not support the request's version answers in the v0 layout.
        flexible_first = exchange.header.api_version >= 3
        for flexible in (flexible_first, not flexible_first):
            try:
                entries = self._locate(frame, flexible)
            except ProtocolError:
                continue
            patched = bytearray(frame)
            for api_key, min_version, max_version, max_pos in entries:
                cap = VERSION_CAPS.get(api_key)
                if cap is not None and max_version > cap:
                    if min_version > cap:
                        warn("broker needs %s v%d or later; cannot cap it" % (API_NAMES[api_key], min_version))
                        continue
                    struct.pack_into(">h", patched, max_pos, cap)
            return bytes(patched)
        raise ProtocolError("ApiVersions answer in neither layout")

    @staticmethod
    def _locate(frame: bytes, flexible: bool) -> list:
        reader = Reader(frame, 4)
        reader.i16()  # error code
        entries = []
        count = reader.compact_array_length() if flexible else reader.array_length()
        for _ in range(count):
            api_key, min_version = reader.i16(), reader.i16()
            max_pos = reader.pos
            entries.append((api_key, min_version, reader.i16(), max_pos))
            if flexible:
                reader.skip_tagged_fields()
        if flexible:
            reader.i32()  # throttle time
            reader.skip_tagged_fields()
            reader.expect_end()
        elif reader.remaining() not in (0, 4):  # v1+ end with the throttle time
            raise ProtocolError("ApiVersions answer does not end after its throttle time")
        return entries


class ListenerDirectory:
    """The proxy's listening ports, one per upstream broker address. Unknown addresses (a broker
    named only in Metadata) get a listener when first asked for."""

    def __init__(self, open_listener: Callable[[tuple], int]) -> None:
        self._open_listener = open_listener
        self._ports: dict = {}

    def add(self, upstream: tuple) -> int:
        if upstream not in self._ports:
            self._ports[upstream] = self._open_listener(upstream)
        return self._ports[upstream]

    def proxy_address(self, host: str, port: int) -> tuple:
        return "127.0.0.1", self.add((host, port))


class MetadataHandler(Handler):
    """Makes every broker in a Metadata answer point at the proxy's listener for it."""

    def __init__(self, directory: ListenerDirectory) -> None:
        self._directory = directory

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        version = exchange.header.api_version
        reader = response_body(exchange, frame)
        if version >= 3:
            reader.i32()  # throttle time
        start = reader.pos
        brokers = Writer()
        count = reader.array_length()
        brokers.i32(count)
        for _ in range(count):
            node_id, host, port = reader.i32(), reader.string(), reader.i32()
            rack = reader.string() if version >= 1 else None
            if host is None:
                raise ProtocolError("broker %d without a host" % node_id)
            new_host, new_port = self._directory.proxy_address(host, port)
            brokers.i32(node_id).string(new_host).i32(new_port)
            if version >= 1:
                brokers.string(rack)
        return frame[:start] + brokers.getvalue() + frame[reader.pos:]


class FindCoordinatorHandler(Handler):
    """Makes the coordinator in a FindCoordinator answer the proxy's listener for it."""

    def __init__(self, directory: ListenerDirectory) -> None:
        self._directory = directory

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        reader = response_body(exchange, frame)
        if exchange.header.api_version >= 1:
            reader.i32()  # throttle time
        error = reader.i16()
        if exchange.header.api_version >= 1:
            reader.string()  # error message
        reader.i32()  # node id
        start = reader.pos
        host, port = reader.string(), reader.i32()
        if error != 0 or host is None or port <= 0:
            return frame
        new_host, new_port = self._directory.proxy_address(host, port)
        address = Writer().string(new_host).i32(new_port).getvalue()
        return frame[:start] + address + frame[reader.pos:]


class TransactionalHandler(Handler):
    """Common ground of the handlers that guard a transactional producer's requests."""

    def __init__(self, ledger: TransactionLedger, decisions: DecisionLog) -> None:
        self._ledger = ledger
        self._decisions = decisions

    def _rejected(self, header: RequestHeader, transactional_id: Optional[str], producer_id: int,
                  epoch: int, error: int) -> bool:
        """Whether the producer is fenced (the rejection is logged)."""
        if self._ledger.rejection(transactional_id, producer_id, epoch) is None:
            return False
        self._decisions.write("reject", api=API_NAMES[header.api_key], transactional_id=transactional_id,
                              producer_id=producer_id, epoch=epoch, error=error)
        return True


class InitProducerIdHandler(TransactionalHandler):
    """Learns each grant; answers an epoch bump (KIP-360) of a fenced producer PRODUCER_FENCED."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        reader = Reader(frame, header.body)
        flexible = header.api_version >= 2
        transactional_id = reader.compact_string() if flexible else reader.string()
        timeout_ms = reader.i32()
        producer_id, epoch = -1, -1
        if header.api_version >= 3:
            producer_id, epoch = reader.i64(), reader.i16()
        if transactional_id is None:
            return Verdict.relay(Exchange(self, header, None))
        if producer_id >= 0:
            error = PRODUCER_FENCED if header.api_version >= 4 else INVALID_PRODUCER_EPOCH
            if self._rejected(header, transactional_id, producer_id, epoch, error):
                return Verdict.reply(self._error_answer(header, error))
        return Verdict.relay(Exchange(self, header, (transactional_id, timeout_ms)))

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        if exchange.context is None:
            return frame
        transactional_id, timeout_ms = exchange.context
        reader = response_body(exchange, frame)
        reader.i32()  # throttle time
        error, producer_id, epoch = reader.i16(), reader.i64(), reader.i16()
        if error == 0:
            self._ledger.granted(transactional_id, producer_id, epoch, timeout_ms)
        return frame

    @staticmethod
    def _error_answer(header: RequestHeader, error: int) -> bytes:
        writer = response_header(header).i32(0).i16(error).i64(-1).i16(-1)
        if header.api_version >= 2:
            writer.empty_tagged_fields()
        return writer.getvalue()


class ProduceHandler(TransactionalHandler):
    """Attributes transactional batches to their transaction before they reach the mock, learns
    where they landed, and answers a fenced producer INVALID_PRODUCER_EPOCH per partition."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        version = header.api_version
        reader = Reader(frame, header.body)
        transactional_id = reader.string() if version >= 3 else None
        acks = reader.i16()
        reader.i32()  # timeout
        topics = []   # [(topic, [(partition, [BatchHeader])])]
        producer = None
        for _ in range(reader.array_length()):
            topic = reader.string()
            partitions = []
            for _ in range(reader.array_length()):
                partition = reader.i32()
                batches = split_batches(reader.nullable_bytes() or b"")
                partitions.append((partition, batches))
                for batch in batches:
                    if batch.transactional and producer is None:
                        producer = (batch.producer_id, batch.producer_epoch)
            topics.append((topic, partitions))
        expects_answer = acks != 0
        if producer is None:
            return Verdict.relay(None, expects_answer=expects_answer)
        producer_id, epoch = producer
        if transactional_id is None:
            transactional_id = self._ledger.transactional_id_of(producer_id, epoch)
        if self._rejected(header, transactional_id, producer_id, epoch, INVALID_PRODUCER_EPOCH):
            if not expects_answer:
                return Verdict.drop()
            return Verdict.reply(self._error_answer(header, topics, INVALID_PRODUCER_EPOCH))
        txn = self._ledger.transaction_for(producer_id, epoch)
        if txn is None:
            return Verdict.relay(None, expects_answer=expects_answer)
        counts = {}
        for topic, partitions in topics:
            for partition, batches in partitions:
                counts[(topic, partition)] = sum(b.offset_count for b in batches)
                for batch in batches:
                    if batch.transactional:
                        self._ledger.record_batch(txn, topic, partition, batch.base_sequence)
        if not expects_answer:
            return Verdict.relay(None, expects_answer=False)
        return Verdict.relay(Exchange(self, header, (txn, counts)))

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        txn, counts = exchange.context
        version = exchange.header.api_version
        reader = response_body(exchange, frame)
        for _ in range(reader.array_length()):
            topic = reader.string()
            for _ in range(reader.array_length()):
                partition, error, base_offset = reader.i32(), reader.i16(), reader.i64()
                if version >= 2:
                    reader.i64()  # log append time
                if version >= 5:
                    reader.i64()  # log start offset
                if version >= 8:
                    for _ in range(reader.array_length()):
                        reader.i32()
                        reader.string()
                    reader.string()
                count = counts.get((topic, partition), 0)
                if error == 0 and base_offset >= 0 and count > 0:
                    self._ledger.record_offsets(txn, topic, partition, base_offset, base_offset + count - 1)
        return frame

    @staticmethod
    def _error_answer(header: RequestHeader, topics: list, error: int) -> bytes:
        version = header.api_version
        writer = response_header(header).i32(len(topics))
        for topic, partitions in topics:
            writer.string(topic).i32(len(partitions))
            for partition, _batches in partitions:
                writer.i32(partition).i16(error).i64(-1)
                if version >= 2:
                    writer.i64(-1)
                if version >= 5:
                    writer.i64(-1)
                if version >= 8:
                    writer.i32(0).string(None)
        if version >= 1:
            writer.i32(0)
        return writer.getvalue()


class AddPartitionsToTxnHandler(TransactionalHandler):
    """Begins the transaction's clock; answers a fenced producer PRODUCER_FENCED per partition."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        reader = Reader(frame, header.body)
        transactional_id, producer_id, epoch = reader.string(), reader.i64(), reader.i16()
        topics = []
        for _ in range(reader.array_length()):
            topic = reader.string()
            topics.append((topic, [reader.i32() for _ in range(reader.array_length())]))
        if self._rejected(header, transactional_id, producer_id, epoch, PRODUCER_FENCED):
            writer = response_header(header).i32(0).i32(len(topics))
            for topic, partitions in topics:
                writer.string(topic).i32(len(partitions))
                for partition in partitions:
                    writer.i32(partition).i16(PRODUCER_FENCED)
            return Verdict.reply(writer.getvalue())
        self._ledger.transaction_for(producer_id, epoch)
        return Verdict.relay()


class AddOffsetsToTxnHandler(TransactionalHandler):
    """Answers a fenced producer PRODUCER_FENCED."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        reader = Reader(frame, header.body)
        transactional_id, producer_id, epoch = reader.string(), reader.i64(), reader.i16()
        if self._rejected(header, transactional_id, producer_id, epoch, PRODUCER_FENCED):
            return Verdict.reply(response_header(header).i32(0).i16(PRODUCER_FENCED).getvalue())
        self._ledger.transaction_for(producer_id, epoch)
        return Verdict.relay()


class TxnOffsetCommitHandler(TransactionalHandler):
    """Answers a fenced producer PRODUCER_FENCED per partition."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        reader = Reader(frame, header.body)
        transactional_id = reader.string()
        reader.string()  # group id
        producer_id, epoch = reader.i64(), reader.i16()
        topics = []
        for _ in range(reader.array_length()):
            topic = reader.string()
            partitions = []
            for _ in range(reader.array_length()):
                partitions.append(reader.i32())
                reader.i64()  # committed offset
                if header.api_version >= 2:
                    reader.i32()  # committed leader epoch
                reader.string()  # metadata
            topics.append((topic, partitions))
        if self._rejected(header, transactional_id, producer_id, epoch, PRODUCER_FENCED):
            writer = response_header(header).i32(0).i32(len(topics))
            for topic, partitions in topics:
                writer.string(topic).i32(len(partitions))
                for partition in partitions:
                    writer.i32(partition).i16(PRODUCER_FENCED)
            return Verdict.reply(writer.getvalue())
        return Verdict.relay()


class EndTxnHandler(TransactionalHandler):
    """Commits or aborts the transaction when the mock accepts the EndTxn; answers a fenced
    producer, and a commit that lost a race with a fence, PRODUCER_FENCED."""

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        reader = Reader(frame, header.body)
        transactional_id, producer_id, epoch, committed = reader.string(), reader.i64(), reader.i16(), reader.i8()
        if self._rejected(header, transactional_id, producer_id, epoch, PRODUCER_FENCED):
            return Verdict.reply(response_header(header).i32(0).i16(PRODUCER_FENCED).getvalue())
        session = self._ledger.session(producer_id, epoch)
        if session is None:
            return Verdict.relay()
        return Verdict.relay(Exchange(self, header, (session, session.current, committed != 0)))

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        session, txn, committed = exchange.context
        reader = response_body(exchange, frame)
        reader.i32()  # throttle time
        error_pos = reader.pos
        if reader.i16() != 0:
            return frame
        if self._ledger.ended(session, txn, committed) != "fenced":
            return frame
        self._decisions.write("reject", api="EndTxn", error=PRODUCER_FENCED, **session.describe())
        patched = bytearray(frame)
        struct.pack_into(">h", patched, error_pos, PRODUCER_FENCED)
        return bytes(patched)


class FetchPartition:
    """One partition of a Fetch answer (v4..v11 layout)."""

    __slots__ = ("index", "error", "high_watermark", "last_stable_offset", "log_start_offset",
                 "aborted", "preferred_replica", "records")

    def __init__(self, reader: Reader, version: int) -> None:
        self.index, self.error, self.high_watermark = reader.i32(), reader.i16(), reader.i64()
        self.last_stable_offset = reader.i64() if version >= 4 else -1
        self.log_start_offset = reader.i64() if version >= 5 else -1
        self.aborted = None
        if version >= 4:
            count = reader.i32()
            if count >= 0:
                if count * 16 > reader.remaining():
                    raise ProtocolError("%d aborted transactions do not fit" % count)
                self.aborted = [(reader.i64(), reader.i64()) for _ in range(count)]
        self.preferred_replica = reader.i32() if version >= 11 else -1
        self.records = reader.nullable_bytes()

    def write(self, writer: Writer, version: int) -> None:
        writer.i32(self.index).i16(self.error).i64(self.high_watermark)
        if version >= 4:
            writer.i64(self.last_stable_offset)
        if version >= 5:
            writer.i64(self.log_start_offset)
        if version >= 4:
            if self.aborted is None:
                writer.i32(-1)
            else:
                writer.i32(len(self.aborted))
                for producer_id, first_offset in self.aborted:
                    writer.i64(producer_id).i64(first_offset)
        if version >= 11:
            writer.i32(self.preferred_replica)
        writer.nullable_bytes(self.records)


class FetchResponse:
    """A Fetch answer (v4..v11), parsed whole so that partitions can be rewritten."""

    def __init__(self, frame: bytes, reader: Reader, version: int) -> None:
        self.version = version
        self.header = frame[:reader.pos]
        self.throttle = reader.i32() if version >= 1 else 0
        self.error, self.session_id = (reader.i16(), reader.i32()) if version >= 7 else (0, 0)
        self.topics = []
        for _ in range(reader.array_length()):
            topic = reader.string()
            self.topics.append((topic, [FetchPartition(reader, version) for _ in range(reader.array_length())]))
        reader.expect_end()

    def encode(self) -> bytes:
        writer = Writer().raw(self.header)
        if self.version >= 1:
            writer.i32(self.throttle)
        if self.version >= 7:
            writer.i16(self.error).i32(self.session_id)
        writer.i32(len(self.topics))
        for topic, partitions in self.topics:
            writer.string(topic).i32(len(partitions))
            for partition in partitions:
                partition.write(writer, self.version)
        return writer.getvalue()


class CommittedView:
    """What a read_committed consumer may see of one Fetch answer, given the ledger now."""

    def __init__(self, ledger: TransactionLedger) -> None:
        self._ledger = ledger

    def apply(self, response: FetchResponse) -> tuple:
        """Rewrites the answer's partitions in place. Returns (changed, held_back): held_back when
        records exist but none may be shown yet because of an open transaction."""
        changed = cut = visible = False
        for topic, partitions in response.topics:
            for partition in partitions:
                if partition.error != 0:
                    continue
                partition_changed, partition_cut = self._apply_partition(topic, partition)
                changed |= partition_changed
                cut |= partition_cut
                visible |= bool(partition.records)
        return changed, cut and not visible

    def _apply_partition(self, topic: str, partition: FetchPartition) -> tuple:
        stable = partition.high_watermark
        if partition.last_stable_offset >= 0:
            stable = min(stable, partition.last_stable_offset)
        first_open = self._ledger.first_open_offset(topic, partition.index)
        if first_open is not None:
            stable = min(stable, first_open)
        records = partition.records or b""
        kept = []
        changed = cut = False
        for batch in split_batches(records):
            if batch.base_offset is None:
                break  # a partial batch too short to place; clients skip it anyway
            if batch.base_offset >= stable or (batch.has_v2_header and batch.last_offset >= stable):
                cut = True
                break
            if not batch.transactional:
                kept.append(records[batch.start:batch.stop])
                continue
            state = self._ledger.state_of_batch(topic, partition.index, batch)
            if state == COMMITTED:
                kept.append(records[batch.start:batch.stop])
            elif state == ABORTED:
                kept.append(empty_control_batch(batch))
                changed = True
            else:
                stable = batch.base_offset
                cut = True
                break
        if cut or changed:
            changed = True
            partition.records = b"".join(kept)
        if partition.last_stable_offset != stable:
            partition.last_stable_offset = stable
            changed = True
        if partition.aborted:
            partition.aborted = []
            changed = True
        return changed, cut


class FetchHandler(Handler):
    """Shows read_committed fetches only committed data; holds an answer that has records but
    none to show yet (an open transaction) until a transaction changes or max_wait_ms passes."""

    MAX_HOLD_SECONDS = 5.0

    def __init__(self, ledger: TransactionLedger) -> None:
        self._ledger = ledger
        self._view = CommittedView(ledger)

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        if header.api_version < 4:
            return Verdict.relay()
        reader = Reader(frame, header.body)
        reader.i32()  # replica id
        max_wait_ms = reader.i32()
        reader.i32()  # min bytes
        reader.i32()  # max bytes
        if reader.i8() != READ_COMMITTED:
            return Verdict.relay()
        return Verdict.relay(Exchange(self, header, max_wait_ms))

    def response(self, exchange: Exchange, frame: bytes) -> Union[bytes, Awaitable[bytes]]:
        answer, held_back = self._filter(exchange, frame)
        if not held_back or exchange.context <= 0:
            return answer
        return self._hold(exchange, frame, answer)

    def _filter(self, exchange: Exchange, frame: bytes) -> tuple:
        reader = response_body(exchange, frame)
        response = FetchResponse(frame, reader, exchange.header.api_version)
        changed, held_back = self._view.apply(response)
        return (response.encode() if changed else frame), held_back

    async def _hold(self, exchange: Exchange, frame: bytes, answer: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(exchange.context / 1000.0, self.MAX_HOLD_SECONDS)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return answer
            try:
                await asyncio.wait_for(self._ledger.next_change(), left)
            except asyncio.TimeoutError:
                return answer
            answer, held_back = self._filter(exchange, frame)
            if not held_back:
                return answer


class ListOffsetsHandler(Handler):
    """Answers "latest" for isolation_level=1 with the last stable offset."""

    def __init__(self, ledger: TransactionLedger) -> None:
        self._ledger = ledger

    def request(self, header: RequestHeader, frame: bytes) -> Verdict:
        version = header.api_version
        if version < 2:
            return Verdict.relay()
        reader = Reader(frame, header.body)
        reader.i32()  # replica id
        if reader.i8() != READ_COMMITTED:
            return Verdict.relay()
        latest = set()
        for _ in range(reader.array_length()):
            topic = reader.string()
            for _ in range(reader.array_length()):
                partition = reader.i32()
                if version >= 4:
                    reader.i32()  # current leader epoch
                if reader.i64() == LATEST_TIMESTAMP:
                    latest.add((topic, partition))
        return Verdict.relay(Exchange(self, header, latest) if latest else None)

    def response(self, exchange: Exchange, frame: bytes) -> bytes:
        version = exchange.header.api_version
        reader = response_body(exchange, frame)
        reader.i32()  # throttle time
        patched = None
        for _ in range(reader.array_length()):
            topic = reader.string()
            for _ in range(reader.array_length()):
                partition, error = reader.i32(), reader.i16()
                reader.i64()  # timestamp
                offset_pos = reader.pos
                offset = reader.i64()
                if version >= 4:
                    reader.i32()  # leader epoch
                first_open = self._ledger.first_open_offset(topic, partition)
                if (error == 0 and (topic, partition) in exchange.context and first_open is not None
                        and 0 <= first_open < offset):
                    patched = patched or bytearray(frame)
                    struct.pack_into(">q", patched, offset_pos, first_open)
        return frame if patched is None else bytes(patched)


class Router:
    """Chooses the handler of each request and guards the relay against what it cannot parse."""

    def __init__(self, directory: ListenerDirectory, ledger: TransactionLedger, decisions: DecisionLog) -> None:
        self._handlers = {
            API_VERSIONS: ApiVersionsHandler(),
            METADATA: MetadataHandler(directory),
            FIND_COORDINATOR: FindCoordinatorHandler(directory),
            INIT_PRODUCER_ID: InitProducerIdHandler(ledger, decisions),
            PRODUCE: ProduceHandler(ledger, decisions),
            ADD_PARTITIONS_TO_TXN: AddPartitionsToTxnHandler(ledger, decisions),
            ADD_OFFSETS_TO_TXN: AddOffsetsToTxnHandler(ledger, decisions),
            TXN_OFFSET_COMMIT: TxnOffsetCommitHandler(ledger, decisions),
            END_TXN: EndTxnHandler(ledger, decisions),
            FETCH: FetchHandler(ledger),
            LIST_OFFSETS: ListOffsetsHandler(ledger),
        }

    def on_request(self, frame: bytes) -> tuple:
        """(correlation id or None, Verdict) for a request frame; never raises."""
        try:
            header = RequestHeader(frame)
        except ProtocolError as err:
            warn("unreadable request header (%s); forwarded unchanged" % err)
            return None, Verdict.relay(None, expects_answer=False)
        handler = self._handlers.get(header.api_key)
        cap = VERSION_CAPS.get(header.api_key)
        if handler is None or (cap is not None and header.api_version > cap):
            if handler is not None:
                warn("%s is above the announced cap; forwarded unchanged" % header.name)
            return header.correlation_id, Verdict.relay()
        try:
            return header.correlation_id, handler.request(header, frame)
        except Exception as err:  # noqa: BLE001 - whatever goes wrong, the request still goes through
            warn("unparsable %s request (%s: %s); forwarded unchanged" % (header.name, type(err).__name__, err))
            return header.correlation_id, Verdict.relay()

    @staticmethod
    def on_response(exchange: Optional[Exchange], frame: bytes) -> Union[bytes, Awaitable[bytes]]:
        """The answer to relay (or an awaitable of it); the frame itself if anything goes wrong."""
        if exchange is None:
            return frame
        try:
            return exchange.handler.response(exchange, frame)
        except Exception as err:  # noqa: BLE001 - whatever goes wrong, the answer still goes through
            warn("unparsable %s answer (%s: %s); relayed unchanged" % (exchange.header.name, type(err).__name__, err))
            return frame


# ----------------------------------------------------------------------------- connections

async def read_frame(reader: asyncio.StreamReader) -> Optional[bytes]:
    """The next size-prefixed message (without the prefix); None at a clean end of stream."""
    try:
        prefix = await reader.readexactly(4)
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise ProtocolError("stream ended inside a size prefix") from None
        return None
    size = struct.unpack(">i", prefix)[0]
    if size < 0 or size > MAX_FRAME_BYTES:
        raise ProtocolError("message size %d" % size)
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ProtocolError("stream ended inside a message of %d bytes" % size) from None


def frame_bytes(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


class ClientConnection:
    """One client connection relayed to its upstream broker over a connection of its own.
    Answers go back in request order. When the client leaves, answers still on their way are read
    for up to DRAIN_SECONDS, so that the ledger learns where transactional batches landed."""

    DRAIN_SECONDS = 30.0
    CONNECT_SECONDS = 10.0

    def __init__(self, router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 upstream: tuple) -> None:
        self._router = router
        self._client_reader = reader
        self._client_writer = writer
        self._upstream = upstream
        self._upstream_writer: Optional[asyncio.StreamWriter] = None
        self._pending: dict = {}              # correlation id -> deque of (Exchange, Future)
        self._pending_count = 0
        self._drained = asyncio.Event()
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._tasks: set = set()

    def close(self) -> None:
        """Drops both connections at once (proxy shutdown)."""
        for writer in (self._client_writer, self._upstream_writer):
            if writer is not None:
                writer.transport.abort()

    async def run(self) -> None:
        try:
            upstream_reader, self._upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._upstream), self.CONNECT_SECONDS)
        except (OSError, asyncio.TimeoutError) as err:
            warn("cannot reach upstream %s:%d: %s" % (self._upstream[0], self._upstream[1], err))
            self._client_writer.transport.abort()
            return
        for writer in (self._client_writer, self._upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answers = asyncio.create_task(self._relay_answers(upstream_reader))
        outbox = asyncio.create_task(self._write_outbox())
        try:
            await self._relay_requests()
        except (ProtocolError, ConnectionError, OSError) as err:
            warn("client connection to %s:%d ended: %s" % (self._upstream[0], self._upstream[1], err))
        finally:
            outbox.cancel()
            if not answers.done() and self._pending_count:
                drained = asyncio.create_task(self._drained.wait())
                await asyncio.wait({answers, drained}, timeout=self.DRAIN_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
                drained.cancel()
            answers.cancel()
            for task in list(self._tasks):
                task.cancel()
            self._upstream_writer.transport.abort()
            self._client_writer.transport.abort()

    async def _relay_requests(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await read_frame(self._client_reader)
            if frame is None:
                return
            correlation_id, verdict = self._router.on_request(frame)
            if verdict.answer is not None:
                answered = loop.create_future()
                answered.set_result(verdict.answer)
                self._outbox.put_nowait(answered)
            if not verdict.forward:
                continue
            if verdict.expects_answer and correlation_id is not None:
                answer = loop.create_future()
                self._pending.setdefault(correlation_id, collections.deque()).append((verdict.exchange, answer))
                self._pending_count += 1
                self._drained.clear()
                self._outbox.put_nowait(answer)
            self._upstream_writer.write(frame_bytes(frame))
            await self._upstream_writer.drain()

    async def _relay_answers(self, upstream_reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await read_frame(upstream_reader)
                if frame is None:
                    return
                entry = None
                correlation_id = struct.unpack_from(">i", frame)[0] if len(frame) >= 4 else None
                waiting = self._pending.get(correlation_id)
                if waiting:
                    entry = waiting.popleft()
                    if not waiting:
                        del self._pending[correlation_id]
                    self._pending_count -= 1
                if entry is None:
                    stray = loop.create_future()
                    stray.set_result(frame)
                    self._outbox.put_nowait(stray)
                    continue
                exchange, answer = entry
                result = self._router.on_response(exchange, frame)
                if isinstance(result, (bytes, bytearray)):
                    answer.set_result(bytes(result))
                else:
                    task = asyncio.create_task(self._complete_later(answer, result, frame, exchange))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if not self._pending_count:
                    self._drained.set()
        except (ProtocolError, ConnectionError, OSError) as err:
            warn("upstream connection %s:%d ended: %s" % (self._upstream[0], self._upstream[1], err))
        finally:
            # Without its broker the client connection is useless: the client reconnects.
            self._client_writer.transport.abort()

    @staticmethod
    async def _complete_later(answer: asyncio.Future, result: Awaitable[bytes], frame: bytes,
                              exchange: Exchange) -> None:
        try:
            value = await result
        except Exception as err:  # noqa: BLE001 - whatever goes wrong, the answer still goes through
            warn("unparsable %s answer (%s: %s); relayed unchanged" % (exchange.header.name, type(err).__name__, err))
            value = frame
        if not answer.done():
            answer.set_result(value)

    async def _write_outbox(self) -> None:
        try:
            while True:
                answer = await self._outbox.get()
                payload = await answer
                self._client_writer.write(frame_bytes(payload))
                await self._client_writer.drain()
        except (ConnectionError, OSError):
            self._client_writer.transport.abort()


# ----------------------------------------------------------------------------- the proxy

class Proxy:
    """The listeners, the shared ledger and the open connections."""

    def __init__(self, decisions: DecisionLog) -> None:
        self._ledger = TransactionLedger(decisions)
        self.directory = ListenerDirectory(self._open_listener)
        self._router = Router(self.directory, self._ledger, decisions)
        self._servers: list = []
        self._server_tasks: set = set()
        self._connections: set = set()

    def _open_listener(self, upstream: tuple) -> int:
        # Bound and listening at once, so the port can be handed out before the server task runs:
        # early clients wait in the backlog.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._serve(sock, upstream))
        self._server_tasks.add(task)
        task.add_done_callback(self._server_tasks.discard)
        return sock.getsockname()[1]

    async def _serve(self, sock: socket.socket, upstream: tuple) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = ClientConnection(self._router, reader, writer, upstream)
            self._connections.add(connection)
            try:
                await connection.run()
            finally:
                self._connections.discard(connection)

        self._servers.append(await asyncio.start_server(accept, sock=sock))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for task in list(self._server_tasks):
            task.cancel()


def parse_upstreams(text: str) -> list:
    upstreams = []
    for item in text.split(","):
        item = item.strip()
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError("bad upstream address %r (want host:port)" % item)
        upstreams.append((host, int(port)))
    return upstreams


async def serve(upstreams: list, decisions: DecisionLog) -> int:
    proxy = Proxy(decisions)
    ports = [proxy.directory.add(upstream) for upstream in upstreams]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write("BOOTSTRAP %s\n" % ",".join("127.0.0.1:%d" % port for port in ports))
    sys.stdout.flush()
    await stop.wait()
    await proxy.close()
    return 0


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Kafka proxy adding fencing and read_committed to the mock broker")
    parser.add_argument("--upstream", required=True, type=parse_upstreams,
                        help="the mock brokers, host:port[,host:port...] (mock_broker's BOOTSTRAP line)")
    parser.add_argument("--log", help="append one JSON line per transaction decision to this file")
    args = parser.parse_args(argv)
    decisions = DecisionLog(args.log)
    try:
        return asyncio.run(serve(args.upstream, decisions))
    finally:
        decisions.close()


if __name__ == "__main__":
    sys.exit(main())
