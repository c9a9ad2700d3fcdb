"""Properties of the codec from Python: oracle agreement, round trips, tracking, errors."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

import zip2zip as z
from lzw_oracle import OracleLZW, oracle_encode


@st.composite
def cases(draw, max_len: int = 300):
    """A small vocabulary (so phrases repeat and codebooks fill), a config and ids."""
    vocab = draw(st.integers(1, 9))
    k = draw(st.integers(0, 48))
    s = draw(st.integers(1, 6))
    disabled = draw(st.lists(st.integers(0, vocab - 1), max_size=3))
    ids = draw(st.lists(st.integers(0, vocab - 1), max_size=max_len))
    return z.CodebookConfig(vocab, k, s, disabled), ids


def entries(state: z.CodecState) -> list[list[int]]:
    return [state.phrase(state.config.vocab_size + i).tolist() for i in range(state.installed)]


def fresh_state_after(config: z.CodebookConfig, ids) -> z.CodecState:
    state = z.CodecState(config)
    state.feed_ids(ids)
    return state


@given(cases())
def test_matches_oracle_and_round_trips(case):
    config, ids = case
    encoding = z.encode_ids(config, ids)
    codes, installed, phrases = oracle_encode(
        config.vocab_size, config.max_codebook_size, config.max_subtokens, config.disabled_ids, ids
    )
    assert encoding.codes.tolist() == codes
    assert encoding.installed.tolist() == installed
    assert encoding.codebook.shape == (len(phrases), config.max_subtokens)
    assert encoding.codes.dtype == encoding.codebook.dtype == np.int32
    for row, phrase in enumerate(phrases):
        assert encoding.codebook_lengths[row] == len(phrase)
        assert tuple(encoding.codebook[row, : len(phrase)]) == phrase
        assert not encoding.codebook[row, len(phrase) :].any()
    assert z.decode_ids(config, encoding.codes).tolist() == ids


@given(cases())
def test_limits_hold_and_disabled_ids_never_merge(case):
    config, ids = case
    encoding = z.encode_ids(config, ids)
    assert encoding.num_entries <= config.max_codebook_size
    assert ((encoding.codebook_lengths >= 2) & (encoding.codebook_lengths <= config.max_subtokens)).all()
    disabled = set(config.disabled_ids)
    for row, length in enumerate(encoding.codebook_lengths):
        assert not disabled & set(encoding.codebook[row, :length].tolist())
    assert (encoding.codes < config.vocab_size + config.max_codebook_size).all()
    # Every disabled id of the text appears as its own code.
    assert sum(1 for t in ids if t in disabled) == sum(1 for c in encoding.codes if c in disabled)


@given(cases(), st.lists(st.integers(0, 300), max_size=8))
def test_chunking_does_not_change_codes(case, cuts):
    config, ids = case
    bounds = sorted({0, len(ids), *(min(c, len(ids)) for c in cuts)})
    state = z.CodecState(config)
    codes = [state.feed_ids(ids[a:b]) for a, b in zip(bounds, bounds[1:])]
    codes.append(state.finish())
    assert np.concatenate(codes).tolist() == z.encode_ids(config, ids).codes.tolist()
    assert state.pending_code is None


@given(cases())
def test_tracking_follows_encoder_after_every_code(case):
    config, ids = case
    encoding = z.encode_ids(config, ids)
    decoder = z.CodecState(config)
    consumed = 0
    for code, installed in zip(encoding.codes, encoding.installed):
        expanded, _ = decoder.feed_codes([code])
        assert expanded.tolist() == ids[consumed : consumed + len(expanded)]
        consumed += len(expanded)
        assert decoder.installed == installed
        assert decoder == fresh_state_after(config, ids[:consumed])
    assert consumed == len(ids)


@given(cases(), st.lists(st.integers(0, 3), min_size=1))
def test_other_segmentations_leave_the_canonical_state(case, choices):
    """A model may emit [a,b] then c where the encoder emits [a,b,c]: same state either way."""
    config, ids = case
    tracker = z.CodecState(config)
    position = step = 0
    while position < len(ids):
        options = [ids[position]]
        known = {tuple(p): config.vocab_size + i for i, p in enumerate(entries(tracker))}
        end = position + 2
        while end <= len(ids) and tuple(ids[position:end]) in known:
            options.append(known[tuple(ids[position:end])])
            end += 1
        code = options[choices[step % len(choices)] % len(options)]
        step += 1
        expanded, new_ids = tracker.feed_codes([code])
        assert new_ids.tolist() == list(range(tracker.next_id - len(new_ids), tracker.next_id))
        position += len(expanded)
        assert tracker == fresh_state_after(config, ids[:position])


@given(cases(max_len=60), st.lists(st.integers(-3, 70), max_size=40))
def test_arbitrary_codes_give_a_result_or_a_typed_error(case, codes):
    config, ids = case
    state = fresh_state_after(config, ids)
    before = state.copy()
    try:
        expanded, _ = state.feed_codes(codes)
    except z.InvalidCodeError as error:
        assert isinstance(error, ValueError)
        assert "at position" in str(error)
        assert state == before
    else:
        expected = before.copy()
        expected.feed_ids(expanded)
        assert state == expected


@given(cases(), st.integers(0, 300))
def test_snapshot_pickle_and_copy_round_trip(case, split):
    config, ids = case
    state = fresh_state_after(config, ids[:split])
    for restored in (
        pickle.loads(pickle.dumps(state)),
        copy.copy(state),
        copy.deepcopy(state),
        state.copy(),
        z.CodecState.from_bytes(state.to_bytes()),
    ):
        assert restored == state
        assert restored is not state
        assert restored.feed_ids(ids[split:]).tolist() == state.copy().feed_ids(ids[split:]).tolist()
    assert pickle.loads(pickle.dumps(config)) == config
    assert hash(pickle.loads(pickle.dumps(config))) == hash(config)


def test_copies_are_independent():
    config = z.CodebookConfig(5, 100, 4)
    state = fresh_state_after(config, [1, 2, 1, 2])
    clone = state.copy()
    clone.feed_ids([3, 3, 3, 3])
    assert clone != state
    assert state.installed == 2 and clone.installed > 2


def test_corrupted_state_bytes_raise():
    state = fresh_state_after(z.CodebookConfig(6, 50, 4), [1, 2, 3, 1, 2, 3, 1, 2])
    data = state.to_bytes()
    with pytest.raises(z.StateError, match="header"):
        z.CodecState.from_bytes(b"nope" + data[4:])
    with pytest.raises(z.StateError, match="truncated"):
        z.CodecState.from_bytes(data[:-4])
    with pytest.raises(z.StateError, match="whole number"):
        z.CodecState.from_bytes(data[:-1])
    corrupted = bytearray(data)
    corrupted[-8:-4] = (9).to_bytes(4, "little")  # a pending length that does not fit
    with pytest.raises(z.StateError, match="pending"):
        z.CodecState.from_bytes(bytes(corrupted))


def test_kwkwk_and_pending_phrase():
    config = z.CodebookConfig(4, 100, 4)
    encoding = z.encode_ids(config, [1, 1, 1])
    assert encoding.codes.tolist() == [1, 4]  # 4 is read before a decoder installed it
    assert encoding.installed.tolist() == [0, 1]
    state = z.CodecState(config)
    assert state.feed_ids([1, 1, 1]).tolist() == [1]
    assert state.pending.tolist() == [1, 1] and state.pending_code == 4
    assert state.finish().tolist() == [4]
    assert state.pending_code is None and state.finish().tolist() == []


def test_prompt_state_continues_like_whole_text():
    """Generation continues from the state after the prompt's codes, pending phrase open."""
    config = z.CodebookConfig(20, 64, 4, [0])
    text = [3, 4, 5, 3, 4, 5, 3, 4, 0, 5, 3, 4, 5, 6, 3, 4, 5, 6]
    prompt, generated = text[:7], text[7:]
    prompt_codes = z.encode_ids(config, prompt).codes
    state = z.CodecState(config)
    state.feed_codes(prompt_codes)
    state.feed_ids(generated)
    assert state == fresh_state_after(config, text)


def test_worst_cases():
    config = z.CodebookConfig(50_000, 2048, 4)
    same = np.full(100_000, 7, dtype=np.int64)
    encoding = z.encode_ids(config, same)
    assert encoding.codebook_lengths.tolist() == [2, 3, 4]
    assert len(encoding) == 1 + 1 + 1 + (100_000 - 6) // 4 + (1 if (100_000 - 6) % 4 else 0)
    assert (z.decode_ids(config, encoding.codes) == same).all()
    distinct = np.arange(50_000, dtype=np.int32)
    encoding = z.encode_ids(config, distinct)
    assert (encoding.codes == distinct).all() and encoding.num_entries == 2048
    assert (z.decode_ids(config, encoding.codes) == distinct).all()


def test_errors_name_the_value_and_position():
    config = z.CodebookConfig(10, 4, 3)
    with pytest.raises(z.InvalidIdError, match=r"base id 10 at position 2 .* 0\.\.10"):
        z.encode_ids(config, [1, 2, 10])
    with pytest.raises(z.InvalidIdError, match="base id -1 at position 0"):
        z.encode_ids(config, np.array([-1, 2]))
    with pytest.raises(z.InvalidIdError, match="at position 1"):
        z.encode_ids(config, [1, 2**70])
    with pytest.raises(z.InvalidIdError, match="at position 0"):
        z.encode_ids(config, np.array([2**63 + 5], dtype=np.uint64))
    with pytest.raises(z.InvalidCodeError, match=r"code 14 at position 1 is out of range: valid codes are 0\.\.14"):
        z.decode_ids(config, [1, 14])
    with pytest.raises(z.InvalidCodeError, match="code 11 at position 0 is not a known hypertoken"):
        z.decode_ids(config, [11])
    with pytest.raises(z.InvalidIdError, match="sequence 1 of the batch: base id 99 at position 0"):
        z.encode_ids_batch(config, [[1], [99]])
    with pytest.raises(z.InvalidCodeError, match="sequence 0 of the batch"):
        z.decode_ids_batch(config, [[12], [1]])
    state = fresh_state_after(config, [1, 2, 1])
    before = state.copy()
    with pytest.raises(z.InvalidIdError):
        state.feed_ids([1, 2, 3, 77])
    assert state == before
    with pytest.raises(z.InvalidCodeError, match="not a known hypertoken"):
        state.phrase(13)
    assert issubclass(z.Zip2ZipError, ValueError)
    for error in (z.InvalidIdError, z.InvalidCodeError, z.ConfigError, z.StateError):
        assert issubclass(error, z.Zip2ZipError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 4), "vocab_size must be at least 1"),
        ((10, 10, 0), "max_subtokens must be in 1..=256"),
        ((10, 10, 257), "max_subtokens"),
        ((10, -1, 4), "max_codebook_size must be non-negative"),
        ((10, 2**31, 4), "fits in int32"),
        ((10, 10, 4, [3, 10]), "disabled id 10 is out of range"),
        ((10, 10, 4, [-2]), "non-negative"),
        ((2**63, 10, 4), "vocab_size is out of range"),
        ((10, 2**64, 4), "max_codebook_size is out of range"),
        ((10, 10, -(2**70)), "max_subtokens is out of range"),
        ((10, 10, 4, [2**70]), "a disabled id is out of range"),
    ],
)
def test_invalid_configs(args, message):
    with pytest.raises(z.ConfigError, match=message):
        z.CodebookConfig(*args)


@pytest.mark.parametrize("args", [(True,), (10.0,), ("10",), (10, 16, 4, [True]), (10, 16, 4, [1.0])])
def test_config_numbers_must_be_integers(args):
    with pytest.raises(TypeError, match="must be an integer"):
        z.CodebookConfig(*args)


def test_config_numbers_may_be_numpy_integers_and_defaults_may_be_none():
    assert z.CodebookConfig(np.int64(100), np.int32(16), np.uint8(4), [np.int16(3)]) == z.CodebookConfig(
        100, 16, 4, [3]
    )
    assert z.CodebookConfig(100, None, None) == z.CodebookConfig(100)


def test_config_accessors():
    config = z.CodebookConfig(100, disabled_ids={5, 1})
    assert (config.vocab_size, config.max_codebook_size, config.max_subtokens) == (100, 2048, 4)
    assert config.disabled_ids == (1, 5)
    assert "disabled_ids=(1, 5)" in repr(config)
    assert z.CodebookConfig(100, disabled_ids=[7]).disabled_ids == (7,)


@pytest.mark.parametrize(
    "ids",
    [
        [1, 2, 1, 2, 3],
        (1, 2, 1, 2, 3),
        np.array([1, 2, 1, 2, 3], dtype=np.uint8),
        np.array([1, 2, 1, 2, 3], dtype=np.int16),
        np.array([1, 2, 1, 2, 3], dtype=np.uint64),
        np.array([9, 1, 9, 2, 9, 1, 9, 2, 9, 3])[1::2],
        [np.int64(1), 2, np.int32(1), 2, 3],
    ],
    ids=["list", "tuple", "uint8", "int16", "uint64", "strided", "mixed-scalars"],
)
def test_accepts_integer_sequences(ids):
    config = z.CodebookConfig(10, 16, 4)
    assert z.encode_ids(config, ids).codes.tolist() == [1, 2, 10, 3]


@pytest.mark.parametrize(
    ("ids", "error"),
    [
        ([1.0, 2.0], TypeError),
        ([True, False], TypeError),
        (["a"], TypeError),
        (5, TypeError),
        ([[1, 2], [3, 4]], z.InvalidIdError),
        ([1, "2"], TypeError),
    ],
)
def test_rejects_what_is_not_a_flat_integer_sequence(ids, error):
    with pytest.raises(error):
        z.encode_ids(z.CodebookConfig(10), ids)


def test_empty_inputs():
    config = z.CodebookConfig(10)
    encoding = z.encode_ids(config, [])
    assert len(encoding) == 0 and encoding.codebook.shape == (0, 4)
    assert z.decode_ids(config, []).tolist() == []
    assert z.encode_ids_batch(config, []) == []
    state = z.CodecState(config)
    assert state.feed_codes([])[0].tolist() == [] and state.finish().tolist() == []


@given(st.lists(st.lists(st.integers(0, 6), max_size=80), max_size=10))
def test_batches_equal_single_calls(batch):
    config = z.CodebookConfig(7, 12, 3, [6])
    arrays = [np.array(ids, dtype=np.int32 if i % 2 else np.int64) for i, ids in enumerate(batch)]
    encodings = z.encode_ids_batch(config, arrays)
    assert encodings == [z.encode_ids(config, ids) for ids in batch]
    decoded = z.decode_ids_batch(config, [e.codes for e in encodings])
    assert [d.tolist() for d in decoded] == batch


def test_large_batch_runs_in_parallel_and_is_exact():
    rng = np.random.default_rng(0)
    config = z.CodebookConfig(300, 2048, 4, [0, 1])
    batch = [rng.integers(0, 300, size=int(rng.integers(0, 20_000))) for _ in range(24)]
    encodings = z.encode_ids_batch(config, batch)
    for ids, encoding in zip(batch, encodings):
        assert encoding == z.encode_ids(config, ids)
        assert (z.decode_ids(config, encoding.codes) == ids).all()


class CodecMachine(RuleBasedStateMachine):
    """Feed ids and codes, snapshot and restore, against the oracle as the model."""

    snapshots = Bundle("snapshots")

    @initialize(vocab=st.integers(2, 7), k=st.integers(0, 30), s=st.integers(1, 5), disabled=st.sets(st.integers(0, 1)))
    def setup(self, vocab, k, s, disabled):
        self.config = z.CodebookConfig(vocab, k, s, disabled)
        self.state = z.CodecState(self.config)
        self.model = OracleLZW(vocab, k, s, frozenset(disabled))

    @rule(data=st.data())
    def feed_ids(self, data):
        ids = data.draw(st.lists(st.integers(0, self.config.vocab_size - 1), max_size=20))
        assert self.state.feed_ids(ids).tolist() == [c for c, _ in self.model.feed(ids)]

    @rule(data=st.data())
    def feed_codes(self, data):
        limit = self.config.vocab_size + self.config.max_codebook_size
        codes = data.draw(st.lists(st.integers(0, limit), max_size=5))
        try:
            expanded, _ = self.state.feed_codes(codes)
        except z.InvalidCodeError:
            return
        self.model.feed(expanded.tolist())

    @rule()
    def finish(self):
        assert self.state.finish().tolist() == [c for c, _ in self.model.finish()]

    @rule(target=snapshots)
    def snapshot(self):
        return (pickle.dumps(self.state), copy.deepcopy(self.model))

    @rule(snapshot=snapshots)
    def restore(self, snapshot):
        data, model = snapshot
        restored = pickle.loads(data)
        assume(restored.config == self.config)
        self.state, self.model = restored, copy.deepcopy(model)

    @invariant()
    def same_as_model(self):
        if not hasattr(self, "state"):
            return
        assert entries(self.state) == [list(p) for p in self.model.entries]
        assert self.state.pending.tolist() == list(self.model.pending)


TestCodecMachine = CodecMachine.TestCase


@given(cases(), st.integers(0, 60), st.integers(0, 60), st.integers(-5, 5))
def test_phrase_tables_match_single_phrases(case, start, length, pad):
    config, ids = case
    state = fresh_state_after(config, ids)
    table, lengths = state.phrases(start, start + length, pad)
    end = min(start + length, state.installed)
    assert table.shape == (max(0, end - start), config.max_subtokens) and len(lengths) == table.shape[0]
    for row, index in enumerate(range(start, end)):
        phrase = state.phrase(config.vocab_size + index).tolist()
        assert lengths[row] == len(phrase)
        assert table[row].tolist() == phrase + [pad] * (config.max_subtokens - len(phrase))
