"""Threads: arrays changed by another thread while zip2zip reads them, and many threads encoding
and tracking at once (separate states, shared inputs). Results equal the single-threaded ones or
are a typed error; no panic reaches Python and no state takes in invalid ids."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import zip2zip as z

V = 1000
CONFIG = z.CodebookConfig(V, 256, 4)


def stream(seed: int, length: int = 200_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phrase = rng.integers(0, V, size=64, dtype=np.int32)
    return np.resize(np.concatenate([phrase, rng.integers(0, V, size=64, dtype=np.int32)]), length).astype(np.int32)


class TailWriter:
    """A thread that, a moment after each call starts (once zip2zip has checked the ids and let
    go of the GIL), overwrites the tail of ``array`` with -1, and puts it back after the call."""

    def __init__(self, array: np.ndarray, delay: float = 0.002) -> None:
        self.array, self.delay, self.original = array, delay, array.copy()
        self.started, self.finished, self.stop = threading.Event(), threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.started.wait(0.05):
                continue
            self.started.clear()
            time.sleep(self.delay)
            self.array[-1000:] = -1
            self.finished.wait()
            self.finished.clear()
            self.array[:] = self.original

    def call(self, function):
        self.started.set()
        try:
            return function()
        finally:
            self.finished.set()
            while not np.array_equal(self.array, self.original):  # wait for the restore
                time.sleep(0.0005)

    def close(self) -> None:
        self.stop.set()
        self.finished.set()
        self.thread.join()


@pytest.mark.parametrize("call", ["encode_ids", "encode_ids_batch", "feed_ids"])
def test_an_array_written_by_another_thread_while_encoding_is_read_as_it_was(call):
    """zip2zip copies the ids before it lets go of the GIL: a write into the caller's array
    during the call changes nothing (it used to panic, or leave -1 entries in a state)."""
    ids = stream(1, 2_000_000)
    expected = z.encode_ids(CONFIG, ids.copy()).codes
    writer = TailWriter(ids)

    def run() -> np.ndarray:
        if call == "encode_ids":
            return z.encode_ids(CONFIG, ids).codes
        if call == "encode_ids_batch":
            return z.encode_ids_batch(CONFIG, [ids, ids])[1].codes
        state = z.CodecState(CONFIG)
        codes = np.concatenate([state.feed_ids(ids), state.finish()])
        assert pickle.loads(pickle.dumps(state)) == state  # the state is whole
        return codes

    try:
        for _ in range(5):
            assert np.array_equal(writer.call(run), expected)
    finally:
        writer.close()


def test_many_threads_encoding_and_tracking_equal_one_thread():
    streams = [stream(seed, 50_000) for seed in range(8)]
    single = [z.encode_ids(CONFIG, ids).codes for ids in streams]

    def work(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = streams[index % len(streams)]  # shared inputs, never written
        codes = z.encode_ids(CONFIG, ids).codes
        tracker = z.CodecState(CONFIG)
        tracked_ids, _ = tracker.feed_codes(codes)
        feeder = z.CodecState(CONFIG)
        fed = np.concatenate([feeder.feed_ids(ids), feeder.finish()])
        return codes, np.asarray(tracked_ids), fed

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(32)))
    for index, (codes, tracked, fed) in enumerate(results):
        assert np.array_equal(codes, single[index % len(streams)])
        assert np.array_equal(tracked, streams[index % len(streams)])
        assert np.array_equal(fed, codes)


def test_a_state_in_use_by_another_thread_is_a_typed_error_and_stays_whole():
    """While one thread feeds a large input into a `CodecState` (the GIL released), another
    thread's calls on the same state get a `StateError` that says so, instead of PyO3's bare
    ``RuntimeError: Already borrowed``; what the first thread wrote is exactly what one thread
    alone writes. Reads of an idle state may come from several threads."""
    ids = stream(7, 2_000_000)
    alone = z.CodecState(CONFIG)
    want = alone.feed_ids(ids)
    refused, other = [], []
    for _ in range(5):  # the other thread must land inside the first one's call
        state = z.CodecState(CONFIG)
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(state.feed_ids, ids)
            while not future.done():
                # A read, a copy, and a write that changes nothing even when it gets the state
                # (before the first call starts or after it ends).
                for attempt in (lambda: state.installed, state.copy, lambda: state.feed_ids(np.array([], np.int32))):
                    try:
                        attempt()
                    except z.StateError as error:
                        refused.append(str(error))
                    except Exception as error:  # noqa: BLE001 - any other kind fails the test below
                        other.append(repr(error))
            got = future.result()
        if refused:
            break
    assert not other, other[:3]
    assert refused and all("in use by another thread" in message for message in refused)
    assert len({message for message in refused}) == 1
    assert np.array_equal(got, want) and state == alone  # the refused calls changed nothing
    with ThreadPoolExecutor(4) as pool:  # concurrent reads of one idle state
        copies = list(pool.map(lambda _: state.copy(), range(8)))
    assert all(copy == alone for copy in copies)
