"""The simulator's prompt-cache rules, proven on the pure-Python engines.

Every expected number is computed from the block token counts of the request.
"""

from __future__ import annotations

import hashlib
import random
import threading

import pytest

from tenax.testing.cache import AnthropicCache, AnthropicUsage, Block, OpenAICache
from tenax.testing.tokens import SimClock, block_key, count_tokens

MODEL = "claude-sonnet-4-5"


def blk(name: str, tokens: int, bp: str | None = None) -> Block:
    """A block whose content is ``name`` (so equal names mean equal content)."""
    return Block(key=block_key({"type": "text", "text": name}), tokens=tokens, breakpoint=bp)


def total(blocks: list[Block]) -> int:
    return sum(b.tokens for b in blocks)


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


# ---------------------------------------------------------------- tokens.py


def test_count_tokens_is_ceil_len_over_four():
    assert count_tokens("") == 0
    assert count_tokens("a") == 1
    assert count_tokens("abcd") == 1
    assert count_tokens("abcde") == 2
    assert count_tokens("x" * 4096) == 1024
    assert count_tokens("x" * 4097) == 1025
    assert count_tokens("é" * 8) == 2  # characters, not bytes
    with pytest.raises(TypeError):
        count_tokens(b"bytes")  # type: ignore[arg-type]


def test_block_key_is_sha256_of_canonical_json():
    a = {"name": "bash", "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}}
    b = {"input_schema": {"properties": {"cmd": {"type": "string"}}, "type": "object"}, "name": "bash"}
    assert block_key(a) == block_key(b)
    expected = hashlib.sha256(
        b'{"input_schema":{"properties":{"cmd":{"type":"string"}},"type":"object"},"name":"bash"}'
    ).hexdigest()
    assert block_key(a) == expected
    assert block_key({"text": "caf\u00e9"}) == hashlib.sha256('{"text":"café"}'.encode()).hexdigest()
    assert block_key(a) != block_key({**a, "name": "sh"})
    with pytest.raises(TypeError):
        block_key({"x": object()})


def test_block_of_counts_text_or_canonical_json():
    assert Block.of("x" * 10) == Block(key=block_key("x" * 10), tokens=3)
    content = {"b": 1, "a": "zz"}
    assert Block.of(content, breakpoint="1h").tokens == count_tokens('{"a":"zz","b":1}')
    with pytest.raises(ValueError):
        Block(key="k", tokens=-1)
    with pytest.raises(ValueError):
        Block(key="k", tokens=1, breakpoint="10m")


def test_simclock_advances_and_is_thread_safe(clock):
    t0 = clock.now()
    assert clock.advance(300) >= t0 + 300
    assert clock.now() >= t0 + 300
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.advance(float("nan"))

    def bump():
        for _ in range(1000):
            clock.advance(0.5)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.offset == 300 + 4 * 1000 * 0.5
    assert clock.now() >= t0 + 2300


# ---------------------------------------------------------------- Anthropic


def agent_request(tool_a: str = "tool-a", user: str = "hi", bp: str | None = "5m") -> list[Block]:
    """tools (2) -> system (breakpoint) -> one user message."""
    return [blk(tool_a, 500), blk("tool-b", 300), blk("system", 400, bp), blk(user, 100)]


def test_anthropic_hit_on_identical_prefix(clock):
    cache = AnthropicCache(clock)
    req = agent_request()
    assert cache.process(MODEL, req) == AnthropicUsage(100, 1200, 0, ephemeral_5m_input_tokens=1200)
    assert cache.process(MODEL, req) == AnthropicUsage(100, 0, 1200)
    # Content after the breakpoint may change freely.
    assert cache.process(MODEL, agent_request(user="something else")) == AnthropicUsage(100, 0, 1200)


def test_anthropic_no_breakpoint_caches_nothing(clock):
    cache = AnthropicCache(clock)
    req = agent_request(bp=None)
    assert cache.process(MODEL, req) == AnthropicUsage(1300, 0, 0)
    assert cache.process(MODEL, req) == AnthropicUsage(1300, 0, 0)
    assert len(cache) == 0


def test_anthropic_miss_when_a_tool_definition_changes(clock):
    cache = AnthropicCache(clock)
    cache.process(MODEL, agent_request())
    changed = agent_request(tool_a="tool-a v2")
    assert cache.process(MODEL, changed) == AnthropicUsage(100, 1200, 0, ephemeral_5m_input_tokens=1200)
    # ...and the new prefix is now cached in its turn.
    assert cache.process(MODEL, changed) == AnthropicUsage(100, 0, 1200)


def test_anthropic_ttl_expiry_and_hit_within_it(clock):
    cache = AnthropicCache(clock)
    req = agent_request()
    cache.process(MODEL, req)
    clock.advance(299)
    assert cache.process(MODEL, req).cache_read_input_tokens == 1200
    clock.advance(300)  # 300 s after the last use: expired
    assert cache.process(MODEL, req) == AnthropicUsage(100, 1200, 0, ephemeral_5m_input_tokens=1200)


def test_anthropic_ttl_refreshed_on_hit(clock):
    cache = AnthropicCache(clock)
    req = agent_request()
    cache.process(MODEL, req)
    for _ in range(4):  # 4 * 250 s = 1000 s after the write, but never 300 s without a hit
        clock.advance(250)
        assert cache.process(MODEL, req) == AnthropicUsage(100, 0, 1200)
    clock.advance(301)
    assert cache.process(MODEL, req).cache_read_input_tokens == 0


def test_anthropic_hit_found_by_lookback_refreshes_that_entry(clock):
    """The entry read through the lookback (not at any breakpoint of the request) is refreshed."""
    cache = AnthropicCache(clock)
    cache.process(MODEL, [blk("big-system", 1100, "5m")])
    clock.advance(250)
    req_a = [blk("big-system", 1100)] + [blk(f"a{i}", 10) for i in range(4)] + [blk("a4", 10, "5m")]
    assert cache.process(MODEL, req_a) == AnthropicUsage(0, 50, 1100, ephemeral_5m_input_tokens=50)
    clock.advance(250)  # 500 s after the write, 250 s after the hit
    req_b = [blk("big-system", 1100)] + [blk(f"b{i}", 10) for i in range(4)] + [blk("b4", 10, "5m")]
    assert cache.process(MODEL, req_b) == AnthropicUsage(0, 50, 1100, ephemeral_5m_input_tokens=50)


class ManualClock:
    """A clock that only moves when told, to pin exact TTL boundaries."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


def test_ttl_boundaries_are_exact():
    mc = ManualClock()
    anthropic, openai_ = AnthropicCache(mc), OpenAICache(mc)
    req = agent_request()
    oreq = [blk("sys", 1300), blk("u", 10)]
    anthropic.process(MODEL, req)
    openai_.process(GPT, None, oreq)
    mc.t += 299.999
    assert anthropic.process(MODEL, req).cache_read_input_tokens == 1200
    mc.t += 300  # exactly 300 s since the last use: expired
    assert anthropic.process(MODEL, req).cache_read_input_tokens == 0
    # OpenAI: 599.999 s since its request -> hit (and refresh); then exactly 600 s idle -> miss
    assert openai_.process(GPT, None, oreq) == 1280
    mc.t += 600
    assert openai_.process(GPT, None, oreq) == 0


def test_anthropic_one_hour_ttl(clock):
    cache = AnthropicCache(clock)
    req = agent_request(bp="1h")
    assert cache.process(MODEL, req) == AnthropicUsage(100, 1200, 0, ephemeral_1h_input_tokens=1200)
    clock.advance(3599)
    assert cache.process(MODEL, req) == AnthropicUsage(100, 0, 1200)
    clock.advance(3600)
    assert cache.process(MODEL, req) == AnthropicUsage(100, 1200, 0, ephemeral_1h_input_tokens=1200)


def test_anthropic_mixed_ttls_split_creation(clock):
    cache = AnthropicCache(clock)
    # tools+system cached for 1h, the conversation for 5m
    req = [blk("tool-a", 700), blk("system", 400, "1h"), blk("u1", 300), blk("a1", 200, "5m"), blk("u2", 50)]
    assert cache.process(MODEL, req) == AnthropicUsage(
        50, 1600, 0, ephemeral_5m_input_tokens=500, ephemeral_1h_input_tokens=1100
    )
    assert cache.process(MODEL, req) == AnthropicUsage(50, 0, 1600)
    clock.advance(301)  # the 5m entry is gone, the 1h one lives
    assert cache.process(MODEL, req) == AnthropicUsage(50, 500, 1100, ephemeral_5m_input_tokens=500)


def test_anthropic_miss_across_models(clock):
    cache = AnthropicCache(clock)
    req = agent_request()
    cache.process(MODEL, req)
    assert cache.process("claude-opus-4-1", req) == AnthropicUsage(100, 1200, 0, ephemeral_5m_input_tokens=1200)
    assert cache.process("claude-opus-4-1", req).cache_read_input_tokens == 1200
    assert cache.process(MODEL, req).cache_read_input_tokens == 1200


def lookback_request(distance: int) -> list[Block]:
    """A 1100-token first block, then ``distance`` 10-token blocks, the last one a breakpoint."""
    tail = [blk(f"m{i}", 10) for i in range(distance)]
    tail[-1] = blk(f"m{distance - 1}", 10, "5m")
    return [blk("big-system", 1100)] + tail + [blk("question", 7)]


@pytest.mark.parametrize("distance", [1, 2, 19, 20])
def test_anthropic_lookback_hits_up_to_20_blocks_back(clock, distance):
    cache = AnthropicCache(clock)
    cache.process(MODEL, [blk("big-system", 1100, "5m"), blk("q0", 5)])  # entry at boundary k=0
    usage = cache.process(MODEL, lookback_request(distance))
    assert usage == AnthropicUsage(7, 10 * distance, 1100, ephemeral_5m_input_tokens=10 * distance)


@pytest.mark.parametrize("distance", [21, 22, 30])
def test_anthropic_lookback_misses_beyond_20_blocks(clock, distance):
    cache = AnthropicCache(clock)
    cache.process(MODEL, [blk("big-system", 1100, "5m"), blk("q0", 5)])
    usage = cache.process(MODEL, lookback_request(distance))
    creation = 1100 + 10 * distance
    assert usage == AnthropicUsage(7, creation, 0, ephemeral_5m_input_tokens=creation)


def test_anthropic_lookback_limit_is_configurable(clock):
    cache = AnthropicCache(clock, lookback_blocks=5)
    cache.process(MODEL, [blk("big-system", 1100, "5m")])
    assert cache.process(MODEL, lookback_request(5)).cache_read_input_tokens == 1100
    cache2 = AnthropicCache(clock, lookback_blocks=5)
    cache2.process(MODEL, [blk("big-system", 1100, "5m")])
    assert cache2.process(MODEL, lookback_request(6)).cache_read_input_tokens == 0


def test_anthropic_earlier_breakpoint_reaches_a_far_entry(clock):
    """The last breakpoint is 40 blocks past the entry, but a second one is 5 past it."""
    cache = AnthropicCache(clock)
    cache.process(MODEL, [blk("big-system", 1100, "5m")])
    req = lookback_request(40)
    req[5] = blk("m4", 10, "5m")
    assert cache.process(MODEL, req) == AnthropicUsage(7, 400, 1100, ephemeral_5m_input_tokens=400)


def test_anthropic_only_breakpoints_write_entries(clock):
    """A prefix that was sent before, but never under a breakpoint, is not cached."""
    cache = AnthropicCache(clock)
    first = [blk("big-system", 1100)] + [blk(f"m{i}", 10) for i in range(10)] + [blk("end", 10, "5m")]
    assert cache.process(MODEL, first).cache_creation_input_tokens == 1210
    # Shares the first 6 blocks (1150 tokens) of `first`, then diverges; breakpoint 2 blocks later.
    second = first[:6] + [blk("other", 10), blk("other2", 10, "5m")]
    assert cache.process(MODEL, second) == AnthropicUsage(0, 1170, 0, ephemeral_5m_input_tokens=1170)


def test_anthropic_longest_hit_across_breakpoints(clock):
    cache = AnthropicCache(clock)
    sys_ = [blk("tools", 1000), blk("system", 200, "5m")]
    turn1 = sys_ + [blk("u1", 300), blk("a1", 300, "5m")]
    assert cache.process(MODEL, turn1) == AnthropicUsage(0, 1800, 0, ephemeral_5m_input_tokens=1800)
    # Next turn: breakpoints on the system block and on the new last block.
    turn2 = sys_ + [blk("u1", 300), blk("a1", 300), blk("u2", 50), blk("a2", 40), blk("u3", 30, "5m")]
    assert cache.process(MODEL, turn2) == AnthropicUsage(0, 120, 1800, ephemeral_5m_input_tokens=120)


def test_anthropic_growing_conversation_reads_previous_turn(clock):
    cache = AnthropicCache(clock)
    history = [blk("tools", 900), blk("system", 300, "1h")]
    expected_read = 0
    for turn in range(6):
        for b in (blk(f"user{turn}", 40), blk(f"assistant{turn}", 60)):
            history.append(b)
        req = history[:-1] + [Block(history[-1].key, history[-1].tokens, "5m")] + [blk(f"q{turn}", 9)]
        usage = cache.process(MODEL, req)
        cached_span = total(history)
        assert usage.cache_read_input_tokens == expected_read
        assert usage.cache_creation_input_tokens == cached_span - expected_read
        assert usage.input_tokens == 9
        expected_read = cached_span


def test_anthropic_minimum_cacheable_length(clock):
    cache = AnthropicCache(clock)
    short = [blk("tools", 1000), blk("system", 23, "5m"), blk("user", 50)]  # 1023 before the breakpoint
    assert cache.process(MODEL, short) == AnthropicUsage(1073, 0, 0)
    assert cache.process(MODEL, short) == AnthropicUsage(1073, 0, 0)
    assert len(cache) == 0
    exact = [blk("tools", 1000), blk("system", 24, "5m"), blk("user", 50)]  # exactly 1024
    assert cache.process(MODEL, exact) == AnthropicUsage(50, 1024, 0, ephemeral_5m_input_tokens=1024)
    assert cache.process(MODEL, exact) == AnthropicUsage(50, 0, 1024)


def test_anthropic_breakpoint_below_minimum_is_not_written(clock):
    cache = AnthropicCache(clock)
    req = [blk("system", 600, "1h"), blk("u1", 600, "5m"), blk("u2", 5)]
    # Only the 1200-token prefix is cacheable: all of it is written with the 5m entry.
    assert cache.process(MODEL, req) == AnthropicUsage(5, 1200, 0, ephemeral_5m_input_tokens=1200)
    other = [blk("system", 600, "1h"), blk("different", 600, "5m"), blk("u2", 5)]
    assert cache.process(MODEL, other).cache_read_input_tokens == 0


def test_anthropic_minimum_per_model(clock):
    cache = AnthropicCache(clock, min_cacheable_tokens={"claude-haiku-3-5": 2048, "*": 1024})
    req = [blk("system", 1500, "5m"), blk("user", 10)]
    assert cache.min_cacheable("claude-haiku-3-5") == 2048
    assert cache.min_cacheable(MODEL) == 1024
    assert cache.process("claude-haiku-3-5", req) == AnthropicUsage(1510, 0, 0)
    assert cache.process("claude-haiku-3-5", req) == AnthropicUsage(1510, 0, 0)
    assert cache.process(MODEL, req) == AnthropicUsage(10, 1500, 0, ephemeral_5m_input_tokens=1500)
    assert cache.process(MODEL, req) == AnthropicUsage(10, 0, 1500)


def test_anthropic_rejects_more_than_four_breakpoints(clock):
    cache = AnthropicCache(clock)
    req = [blk(f"b{i}", 300, "5m") for i in range(5)]
    with pytest.raises(ValueError, match="maximum of 4"):
        cache.process(MODEL, req)
    assert cache.process(MODEL, req[:4]).cache_creation_input_tokens == 1200


def test_anthropic_accounting_always_sums_to_total(clock):
    """Randomized growing conversations with edits, model switches and idle gaps:
    input + creation + read == total, and the parts stay sane."""
    rng = random.Random(1234)
    cache = AnthropicCache(clock)
    convo = [blk("tools", 600), blk("system", 500)]
    hits = writes = 0
    for step in range(500):
        roll = rng.random()
        if roll < 0.75 or len(convo) < 4:
            convo += [blk(f"s{step}.{i}", rng.choice([1, 30, 120, 400])) for i in range(rng.randint(1, 3))]
        elif roll < 0.85:
            i = rng.randrange(len(convo))
            convo[i] = blk(f"edit{step}", convo[i].tokens)
        else:
            convo = convo[: rng.randint(2, len(convo))]
        n = len(convo)
        chosen = set(rng.sample(range(n), k=min(n, rng.randint(0, 3))))
        if rng.random() < 0.8:
            chosen.add(n - 1)
        chosen = set(sorted(chosen)[-4:])
        blocks = [
            Block(b.key, b.tokens, rng.choice(["5m", "5m", "1h"]) if i in chosen else None) for i, b in enumerate(convo)
        ]
        usage = cache.process(rng.choice([MODEL, MODEL, "claude-other"]), blocks)
        parts = (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens)
        assert sum(parts) == total(blocks)
        assert min(parts) >= 0
        assert usage.ephemeral_5m_input_tokens + usage.ephemeral_1h_input_tokens == usage.cache_creation_input_tokens
        last_bp = total(blocks[: max(chosen) + 1]) if chosen else 0
        assert usage.input_tokens == (total(blocks) - last_bp if last_bp >= 1024 else total(blocks))
        if usage.cache_read_input_tokens:
            hits += 1
            assert usage.cache_read_input_tokens >= 1024
        writes += usage.cache_creation_input_tokens > 0
        if rng.random() < 0.05:
            clock.advance(rng.choice([10, 200, 400]))
    assert hits > 100 and writes > 100  # the walk really exercised reads and writes


# ---------------------------------------------------------------- OpenAI

GPT = "gpt-5"


def test_openai_nothing_cached_under_1024(clock):
    cache = OpenAICache(clock)
    req = [blk("instructions", 800), blk("tools", 223), blk("user", 1)]  # 1024 total, shared prefix 1023
    assert cache.process(GPT, None, req) == 0
    assert cache.process(GPT, None, req[:2] + [blk("user2", 1)]) == 0
    small = [blk("small", 1000)]
    assert cache.process(GPT, None, small) == 0
    assert cache.process(GPT, None, small) == 0


def test_openai_1500_token_shared_prefix_reports_1408(clock):
    cache = OpenAICache(clock)
    assert cache.process(GPT, None, [blk("instructions", 1000), blk("tools", 500), blk("user-1", 50)]) == 0
    # 1500 shared tokens -> 1024 + 3*128
    assert cache.process(GPT, None, [blk("instructions", 1000), blk("tools", 500), blk("user-2", 80)]) == 1408


@pytest.mark.parametrize(
    ("shared", "cached"), [(1023, 0), (1024, 1024), (1151, 1024), (1152, 1152), (1279, 1152), (5000, 4992)]
)
def test_openai_128_token_steps(clock, shared, cached):
    cache = OpenAICache(clock)
    cache.process(GPT, None, [blk("prefix", shared), blk("a", 100)])
    assert cache.process(GPT, None, [blk("prefix", shared), blk("b", 100)]) == cached


def test_openai_matches_at_block_granularity(clock):
    cache = OpenAICache(clock)
    cache.process(GPT, None, [blk("sys", 1000), blk("long-a", 600)])
    # The second block differs: only the 1000-token block matches, which is under 1024.
    assert cache.process(GPT, None, [blk("sys", 1000), blk("long-b", 600)]) == 0
    # A shorter request matches a prefix of a longer one seen before.
    cache.process(GPT, None, [blk("S", 1100), blk("x", 200), blk("y", 200)])
    assert cache.process(GPT, None, [blk("S", 1100), blk("x", 200)]) == 1280  # 1300 -> 1280


def test_openai_scoped_by_model(clock):
    cache = OpenAICache(clock)
    req = [blk("sys", 2000), blk("u", 10)]
    assert cache.process(GPT, None, req) == 0
    assert cache.process("gpt-5-mini", None, req) == 0
    # 2010 shared tokens -> 1024 + 7*128 = 1920, in each model's own scope
    assert cache.process("gpt-5-mini", None, req) == 1920
    assert cache.process(GPT, None, req) == 1920


def test_openai_scoped_by_prompt_cache_key(clock):
    cache = OpenAICache(clock)
    req = [blk("sys", 2000), blk("u", 10)]
    assert cache.process(GPT, "session-a", req) == 0
    assert cache.process(GPT, "session-b", req) == 0
    assert cache.process(GPT, None, req) == 0
    # 2010 -> 1024 + 7*128 = 1920
    assert cache.process(GPT, "session-a", req) == 1920
    assert cache.process(GPT, "session-b", req) == 1920
    assert cache.process(GPT, None, req) == 1920
    assert cache.process(GPT, "session-c", req) == 0


def test_openai_ttl_expiry_and_refresh(clock):
    cache = OpenAICache(clock)
    req = [blk("sys", 1300), blk("u", 10)]  # 1310 -> 1280
    cache.process(GPT, None, req)
    for _ in range(3):  # 1500 s after the first request, never 600 s idle
        clock.advance(500)
        assert cache.process(GPT, None, req) == 1280
    clock.advance(600)
    assert cache.process(GPT, None, req) == 0
    assert cache.process(GPT, None, req) == 1280


def test_openai_custom_ttl_and_grid(clock):
    cache = OpenAICache(clock, min_tokens=256, step=64, ttl_s=60)
    req = [blk("sys", 400), blk("u", 10)]  # 410 -> 256 + 2*64 = 384
    cache.process(GPT, None, req)
    clock.advance(59)
    assert cache.process(GPT, None, req) == 384
    clock.advance(61)
    assert cache.process(GPT, None, req) == 0
    with pytest.raises(ValueError):
        OpenAICache(clock, step=0)


def test_engines_are_consistent_under_concurrent_requests(clock):
    """Eight threads send the same request at once: exactly one writes the cache, all others read it."""
    anthropic, openai_ = AnthropicCache(clock), OpenAICache(clock)
    req, oreq = agent_request(), [blk("sys", 1300), blk("u", 10)]
    results: list[tuple[AnthropicUsage, int]] = []
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(50):
            results.append((anthropic.process(MODEL, req), openai_.process(GPT, "k", oreq)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usages = [u for u, _ in results]
    assert len(results) == 400
    assert sum(u.cache_creation_input_tokens == 1200 for u in usages) == 1
    assert sum(u == AnthropicUsage(100, 0, 1200) for u in usages) == 399
    assert sorted(c for _, c in results) == [0] + [1280] * 399
