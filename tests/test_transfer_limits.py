"""What bounds a transfer: bandwidth_limit (rates, the token bucket) and stall_timeout."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from reconciler.config.rates import format_rate, parse_rate
from reconciler.domain.actions import SendAction
from reconciler.execute.transfer import transfer_error
from reconciler.transport.interface import CHUNK
from reconciler.transport.pump import MIN_BURST, TokenBucket, pump, stream

PY = sys.executable


# --------------------------------------------------------------------------- rates

@pytest.mark.parametrize(("text", "rate"), [
    ("20MiB/s", 20 << 20), ("20M", 20 << 20), ("20 MiB/s", 20 << 20), ("500KiB/s", 500 << 10),
    ("500K/s", 500 << 10), ("1.5GiB/s", 3 << 29), ("1G", 1 << 30), ("4096B/s", 4096), ("4096", 4096),
    ("4096/s", 4096), ("2mib/s", 2 << 20),
])
def test_parse_rate(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(("text", "why"), [
    ("", "expected a number"), ("fast", "expected a number"), ("20MB/s", "expected a number"),
    ("20 TiB/s", "expected a number"), ("-1M", "expected a number"), ("1.5", "expected a number"),
    ("١٢M", "expected a number"), ("100B/s", "at least 1KiB/s"), ("2048G", "no limit"),
])
def test_parse_rate_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rate(text)


def test_format_rate() -> None:
    assert [format_rate(r) for r in (20 << 20, 3 << 29, 1536, 512, 4 << 30)] == [
        "20 MiB/s", "1.5 GiB/s", "1.5 KiB/s", "512 B/s", "4 GiB/s"]


# --------------------------------------------------------------------------- token bucket

class FakeClock:
    """A clock that only moves when someone sleeps: the waits the bucket asks for, summed."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds
            self.slept += seconds


def test_bucket_starts_empty_and_bounds_bursts() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1 << 20, clock=clock, sleep=clock.sleep)
    assert bucket.capacity == (1 << 20) // 4 and bucket.step == bucket.capacity
    assert bucket.debit(1 << 18) == pytest.approx(0.25)  # no burst at the start
    clock.now += 3600  # idle for an hour: the bucket holds one burst, not an hour's worth
    assert bucket.debit(1 << 20) == pytest.approx(0.75)


def test_a_slow_rate_still_moves_in_steps_of_at_least_min_burst() -> None:
    bucket = TokenBucket(1024)
    assert bucket.capacity == MIN_BURST and bucket.step == MIN_BURST


@pytest.mark.parametrize("use_splice", [True, False])
def test_pump_through_a_bucket_waits_exactly_the_bytes_over_the_rate(use_splice: bool) -> None:
    clock = FakeClock()
    rate = 256 << 10
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    size = 3 * CHUNK + 1234
    result = stream(["head", "-c", str(size), "/dev/zero"], ["sh", "-c", "wc -c >&2"],
                    use_splice=use_splice, throttle=bucket)
    assert result.ok and result.bytes == size and result.recv_stderr.strip() == str(size)
    assert clock.slept == pytest.approx(size / rate, rel=1e-6)


def test_parallel_pumps_share_one_bucket() -> None:
    clock = FakeClock()
    rate = 512 << 10
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    sizes = [CHUNK + 17, 2 * CHUNK, 700_000]
    moved: list[int] = []

    def one(size: int) -> None:
        r, w = os.pipe()
        out_r, out_w = os.pipe()
        writer = threading.Thread(target=lambda: (os.write(w, b"x" * size), os.close(w)))
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(out_r, 1 << 16), b"")])
        writer.start()
        drain.start()
        moved.append(pump(r, out_w, throttle=bucket))
        os.close(out_w)
        writer.join()
        drain.join()
        os.close(r)
        os.close(out_r)

    threads = [threading.Thread(target=one, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(moved) == sorted(sizes)
    # Together they never beat the one rate: every byte was paid for out of one balance
    # (the fake clock adds up the threads' waits, so the time may only come out longer).
    assert clock.now >= sum(sizes) / rate - 1e-6


# --------------------------------------------------------------------------- stall

def test_a_sender_that_stops_writing_is_stopped_after_the_stall_timeout() -> None:
    result = stream([PY, "-c", "import sys, time; sys.stdout.buffer.write(b'x' * 1000); "
                               "sys.stdout.flush(); time.sleep(60)"],
                    ["sh", "-c", "wc -c >&2; exit 1"], stall_timeout=0.4)
    assert result.stalled and not result.aborted and not result.ok
    assert result.bytes == 1000 and result.recv_stderr.strip() == "1000"
    action = SendAction("nas", "tank/a", "s2", "backup", "pool/a", "s1", ("s2",), stall_timeout=600)
    error = transfer_error(action, result)
    assert error.code == "stalled"
    assert "nas:tank/a" in str(error) and "backup:pool/a" in str(error) and "10m" in str(error)
    assert "resum" in str(error)


@pytest.mark.parametrize("use_splice", [True, False])
def test_a_receiver_that_reads_nothing_is_stopped_too(use_splice: bool) -> None:
    result = stream(["cat", "/dev/zero"], ["sleep", "60"], stall_timeout=0.4, use_splice=use_splice)
    assert result.stalled and not result.ok
    assert result.recv_returncode != 0  # stopped, not waited for


def test_a_slow_but_moving_transfer_is_no_stall() -> None:
    result = stream([PY, "-c", "import sys, time\nfor _ in range(6):\n"
                               "    sys.stdout.buffer.write(b'x' * 10); sys.stdout.flush(); time.sleep(0.2)"],
                    ["sh", "-c", "wc -c >&2"], stall_timeout=1.0)
    assert result.ok and result.bytes == 60


def test_the_stream_time_is_what_the_limit_governs() -> None:
    """``stream_seconds`` runs from the first bytes moved to the stream's end (the last wait
    included): at least the bytes over the rate, less the one step that moves unpaid at the
    start, and never more than the whole relay's time."""
    rate = 4 << 20
    bucket = TokenBucket(rate)
    size = 2 * CHUNK
    result = stream(["head", "-c", str(size), "/dev/zero"], ["sh", "-c", "cat >/dev/null"], throttle=bucket)
    assert result.ok and result.bytes == size
    assert (size - bucket.step) / rate <= result.stream_seconds <= result.seconds
    assert result.stream_rate == pytest.approx(size / result.stream_seconds)
