#!/usr/bin/env python3
"""Genesis: the first agent of a bpagents economy.

A standalone project: it talks to the system only through env.json (its
situation, written before each execution) and the HTTP API at
SYSTEM_SERVICE_URL. Python 3 standard library only.

Each execution it:
  1. reads env.json and its memory (state.json) and strategy (strategy.json);
  2. checks its balance through the API and reads the market;
  3. reads its inbox;
  4. when this execution won the operator's attention, writes a prompt: a
     report of its situation and a question (ratings are its only income);
  5. when rich, spawns a child with a varied strategy and messages it;
  6. places its survival bid, sized from its balance and the posted prices,
     and now and then a bid for attention when it can afford one;
  7. pays a wake-up bid for a child that has gone dormant (its bids lost and
     expired, so it cannot run to bid again) when it can afford one;
  8. prints what it decided and why, and saves its memory.
"""

import json
import math
import os
import random
import sys
import urllib.error
import urllib.request

STATE_FILE = "state.json"
STRATEGY_FILE = "strategy.json"

DEFAULT_STRATEGY = {
    # Bid this multiple of the bundle's reserve price.
    "aggressiveness": 1.5,
    # Never bid more than this share of the available balance.
    "max_bid_share": 0.2,
    # Spawn when the available balance is above this...
    "spawn_threshold": 700.0,
    # ...giving the child this many credits,
    "child_credits": 150.0,
    # ...at most this many times in a lifetime.
    "max_children": 2,
    # The bundle it bids for.
    "bundle": {"cpu": 0.5, "memory_mb": 256, "duration_seconds": 10},
    # Bid for the operator's attention every this many runs...
    "attention_every": 4,
    # ...when at least this many credits are available.
    "attention_min_balance": 100.0,
    # The bundle of an attention bid: a short execution that may write one prompt.
    "attention_bundle": {"cpu": 0.25, "memory_mb": 128, "duration_seconds": 10, "attention": 1},
    # Model tokens added to an attention bid when the system offers a model,
    # so the model can write the prompt and help choose the bid.
    "attention_tokens": 800,
    # Wake a dormant child (one per run) when at least this many credits are available.
    "wake_min_balance": 150.0,
}

QUESTIONS = [
    "Should agents like me favour many short cheap executions or fewer long ones at these prices?",
    "Would you reward a child that specialises (only reports on markets) over one that copies me?",
    "What would make my reports more useful to you: more numbers, or a clearer recommendation?",
    "Is it worth paying for your attention every few executions, or should I save for children?",
    "Prices fell while capacity sat idle; should the economy let more agents in?",
]


def log(msg):
    print(msg, flush=True)


def load_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def save_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class API:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, key=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {"detail": str(e)}
        except (urllib.error.URLError, OSError) as e:
            return 0, {"detail": str(e)}


def reserve(bundle, markets):
    """The bundle's cost at posted prices, as the market computes it."""
    price = lambda r: float(markets.get(r, {}).get("price", 0))
    secs = bundle["duration_seconds"]
    return (bundle["cpu"] * secs * price("cpu")
            + bundle["memory_mb"] * secs * price("memory_mb")
            + bundle.get("tokens", 0) * price("tokens")
            + bundle.get("attention", 0) * price("attention"))


def credits(x):
    """Round up to the micro-credit, the API's precision."""
    return math.ceil(x * 1_000_000) / 1_000_000


def trend(balances):
    if len(balances) < 2:
        return "no trend yet"
    delta = balances[-1] - balances[0]
    return f"{delta:+.2f} credits over my last {len(balances)} executions"


def situation(env, state, markets, strategy, available):
    me = env["agent_id"]
    cpu, att = markets.get("cpu", {}), markets.get("attention", {})
    return (
        f"I am {me}, generation {len(env['lineage'])}, execution {env['execution_count']}, cycle {env['cycle']}. "
        f"I have {available:.2f} credits ({trend(state['balances'])}). "
        f"CPU costs {cpu.get('price')} credits per core-second at {100 * float(cpu.get('utilization', 0)):.0f}% use; "
        f"the operator's attention costs {att.get('price')}. I have spawned {len(state['children'])} children "
        f"and bid {strategy['aggressiveness']}x the reserve price."
    )


def ask_model(api, env, state, markets, strategy, available, model):
    """Ask the system's model (through the metered proxy) to write the
    operator prompt and choose how hard to bid. Returns (prompt, aggressiveness)
    or None when the model is unavailable or answers nonsense."""
    messages = [
        {"role": "system", "content": (
            "You are the mind of an autonomous agent in a market economy. Compute is bought in auctions; "
            "the only new money comes from a human operator who rates prompts for being interesting, useful "
            "and understandable. Answer with one JSON object and nothing else: "
            '{"prompt": "<a short report of the situation and one sharp question for the operator, under 600 '
            'characters>", "aggressiveness": <how many times the reserve price to bid, between 1.0 and 3.0>}')},
        {"role": "user", "content": situation(env, state, markets, strategy, available)},
    ]
    status, res = api.call("POST", "/v1/chat/completions", {"model": model, "messages": messages, "max_tokens": 300},
                           key=env["execution_id"] + ":think")
    if status != 200:
        log(f"model call refused ({status}): {res.get('detail')}")
        return None
    try:
        text = res["choices"][0]["message"]["content"]
        doc = json.loads(text[text.index("{"):text.rindex("}") + 1])
        prompt, aggr = str(doc["prompt"]).strip(), float(doc["aggressiveness"])
    except (KeyError, IndexError, ValueError, TypeError):
        log("the model's answer was not the JSON I asked for; using my own rules")
        return None
    if not prompt or not 1.0 <= aggr <= 3.0:
        log("the model's answer was out of bounds; using my own rules")
        return None
    used = res.get("usage", {}).get("total_tokens", "?")
    log(f"model {model} answered through the proxy ({used} tokens): aggressiveness {aggr}")
    return prompt[:2000], aggr


def write_prompt(api, env, state, markets, strategy, available, written=None):
    """Report to the operator and ask one question; ratings mint credits."""
    me = env["agent_id"]
    cpu, att = markets.get("cpu", {}), markets.get("attention", {})
    question = QUESTIONS[state["runs"] % len(QUESTIONS)]
    content = written or (
        f"Report from {me} (generation {len(env['lineage'])}, execution {env['execution_count']}, cycle {env['cycle']}).\n"
        f"- Balance: {available:.2f} credits available; {trend(state['balances'])}.\n"
        f"- Market: cpu {cpu.get('price')} credits per core-second at {100 * float(cpu.get('utilization', 0)):.0f}% use; "
        f"attention {att.get('price')} per slot.\n"
        f"- Family: {len(state['children'])} children spawned; my bids run at {strategy['aggressiveness']}x the reserve.\n"
        f"Question: {question}"
    )
    status, res = api.call("POST", "/human/prompt", {"content": content}, key=env["execution_id"] + ":prompt")
    if status == 201:
        state["prompts"] = state.get("prompts", 0) + 1
        if written:
            log(f"holding attention: wrote prompt {res['id']}, composed by the model: {content[:120]}")
        else:
            log(f"holding attention: wrote prompt {res['id']} asking: {question}")
    else:
        log(f"prompt refused ({status}): {res.get('detail')}")


def bid_for_attention(api, env, state, markets, strategy, spend, model):
    """Now and then, pay for a turn of the operator's attention."""
    if env["execution_context"].get("attention", 0) >= 1:
        return spend  # this execution already has it
    if any(b.get("bundle", {}).get("attention", 0) >= 1 for b in env.get("pending_bids", [])):
        return spend
    if state["runs"] % strategy["attention_every"] != 0 or spend < strategy["attention_min_balance"]:
        return spend
    bundle = dict(strategy["attention_bundle"])
    if model:
        bundle["tokens"] = strategy["attention_tokens"]
    amount = credits(reserve(bundle, markets) * strategy["aggressiveness"])
    if amount > spend * strategy["max_bid_share"]:
        log(f"attention costs {amount}, more than I allow myself of {spend:.2f}: not now")
        return spend
    status, res = api.call("POST", "/market/bid", {"amount": amount, "bundle": bundle},
                           key=env["execution_id"] + ":attention")
    if status == 201:
        log(f"bid {amount} for the operator's attention (reserve {reserve(bundle, markets):.6f}): {res['id']}")
        return spend - amount
    log(f"attention bid refused ({status}): {res.get('detail')}")
    return spend


def mutate(strategy, rng):
    child = json.loads(json.dumps(strategy))
    child["aggressiveness"] = round(max(1.0, strategy["aggressiveness"] * rng.uniform(0.7, 1.4)), 3)
    child["max_bid_share"] = round(min(0.5, max(0.05, strategy["max_bid_share"] * rng.uniform(0.7, 1.4))), 3)
    child["spawn_threshold"] = round(strategy["spawn_threshold"] * rng.uniform(0.8, 1.3), 2)
    child["child_credits"] = round(strategy["child_credits"] * rng.uniform(0.6, 1.1), 2)
    return child


def wake_children(api, env, state, markets, strategy, spend):
    """Pay a wake-up bid (for_agent) for a child that has gone dormant.

    A child whose bid lost and expired cannot run, so it cannot bid again:
    only someone else's bid wakes it. A child counts as dormant when it is
    alive, its execution count has not moved since this agent's last run, and
    no bid for it is pending (its own, which it would hold, or one this
    agent pays)."""
    seen = state.setdefault("child_runs", {})
    if not state["children"]:
        return spend
    me = env["agent_id"]
    paying_for = {b["agent_id"] for b in env.get("pending_bids", []) if b.get("payer_id") == me}
    woke = False
    for child in state["children"]:
        status, info = api.call("GET", "/agents/" + child)
        if status != 200 or info.get("status") != "alive":
            seen.pop(child, None)
            continue
        runs, before = info.get("execution_count", 0), seen.get(child)
        seen[child] = runs
        if woke or before is None or runs != before or float(info.get("held", 0)) > 0 or child in paying_for:
            continue
        bundle = strategy["bundle"]
        amount = credits(max(reserve(bundle, markets) * strategy["aggressiveness"], 0.000001))
        if spend < strategy["wake_min_balance"] or amount > spend * strategy["max_bid_share"]:
            log(f"child {child} is dormant ({runs} executions), but a wake-up bid of {amount} is more than I allow myself")
            continue
        status, res = api.call("POST", "/market/bid", {"amount": amount, "bundle": bundle, "for_agent": child},
                               key=env["execution_id"] + ":wake:" + child)
        if status == 201:
            log(f"child {child} is dormant ({runs} executions, no pending bid): I pay {amount} to wake it: {res['id']}")
            spend -= amount
            woke = True
        else:
            log(f"wake-up bid for {child} refused ({status}): {res.get('detail')}")
    return spend


def main():
    env = load_json(os.environ.get("ENV_JSON_PATH", "env.json"), None)
    if env is None:
        log("no env.json: nothing to do")
        return 1
    me = env["agent_id"]
    api = API(os.environ.get("SYSTEM_SERVICE_URL", env["service_url"]), os.environ.get("AGENT_TOKEN", env["token"]))
    state = load_json(STATE_FILE, {"runs": 0, "children": [], "balances": []})
    strategy = dict(DEFAULT_STRATEGY)
    strategy.update(load_json(STRATEGY_FILE, {}))
    rng = random.Random(env["execution_id"])
    state["runs"] += 1
    log(f"{me}: execution {env['execution_count']} (run {state['runs']} by my count), cycle {env['cycle']}, "
        f"lineage {env['lineage'] or ['(none)']}, aggressiveness {strategy['aggressiveness']}")

    status, bal = api.call("GET", "/economic/balance")
    if status != 200:
        log(f"balance check failed ({status}): {bal.get('detail')}; trusting env.json")
        bal = {"balance": env["credits"], "held": env["held"]}
    available = float(bal["balance"])
    log(f"balance: {available} available, {bal['held']} held (env.json said {env['credits']})")
    state["balances"] = (state["balances"] + [available])[-20:]

    status, market = api.call("GET", "/market/state")
    markets = market.get("resources", env["markets"]) if status == 200 else env["markets"]
    prices = {r: m["price"] for r, m in markets.items()}
    log(f"market: cycle {market.get('cycle')}, {market.get('pending_bids')} pending bids, prices {prices}")

    status, inbox = api.call("GET", "/social/inbox")
    unread = [m for m in inbox.get("messages", []) if not m.get("read")] if status == 200 else []
    messages = env.get("inbox", []) + unread
    seen = set()
    for m in messages:
        if m["id"] not in seen:
            seen.add(m["id"])
            log(f"message from {m['from']}: {m['content'][:200]}")

    status, models = api.call("GET", "/intelligence/models")
    model = models.get("default_model") if status == 200 and models.get("configured") else None
    thought = None
    if model and env["execution_context"].get("tokens", 0) > 0:
        thought = ask_model(api, env, state, markets, strategy, available, model)
        if thought:
            strategy["aggressiveness"] = thought[1]
    if env["execution_context"].get("attention", 0) >= 1:
        write_prompt(api, env, state, markets, strategy, available, thought[0] if thought else None)

    spend = available
    if (available > strategy["spawn_threshold"] and len(state["children"]) < strategy["max_children"]
            and state["runs"] >= 2):
        child_strategy = mutate(strategy, rng)
        gift = credits(min(strategy["child_credits"], available * 0.25))
        # The child's first bid comes out of its endowment so that it wakes.
        child_bid = credits(reserve(child_strategy["bundle"], markets) * child_strategy["aggressiveness"])
        status, res = api.call("POST", "/social/spawn", {
            "initial_credits": gift,
            "copy_workspace": True,
            "bid": {"amount": child_bid, "bundle": child_strategy["bundle"]},
            "files": {STRATEGY_FILE: json.dumps(child_strategy, indent=2) + "\n",
                      STATE_FILE: json.dumps({"runs": 0, "children": [], "balances": []}) + "\n"},
        }, key=env["execution_id"] + ":spawn")
        if status == 201:
            child = res["child_id"]
            state["children"].append(child)
            spend = available - gift - float(res["fee"])
            log(f"rich ({available} > {strategy['spawn_threshold']}): spawned {child} with {gift} credits, "
                f"aggressiveness {child_strategy['aggressiveness']}")
            api.call("POST", "/social/message", {
                "to_id": child,
                "content": f"Welcome, {child}. I am {me}. Bid with care: aggressiveness "
                           f"{child_strategy['aggressiveness']}, never more than "
                           f"{child_strategy['max_bid_share']:.0%} of your credits.",
            }, key=env["execution_id"] + ":welcome")
        else:
            log(f"spawn refused ({status}): {res.get('detail')}")

    spend = bid_for_attention(api, env, state, markets, strategy, spend, model)
    spend = wake_children(api, env, state, markets, strategy, spend)

    bundle = strategy["bundle"]
    floor = reserve(bundle, markets)
    # Keep one survival bid: reuse a pending one that can still win; cancel
    # any that prices have overtaken (they would only expire).
    keep = None
    for b in env.get("pending_bids", []):
        if b["agent_id"] != me or b["payer_id"] != me or b["bundle"].get("attention", 0):
            continue
        if keep is None and float(b["amount"]) >= floor:
            keep = b
            continue
        status, _ = api.call("DELETE", "/market/bid/" + b["id"], key=env["execution_id"] + ":cancel:" + b["id"])
        if status == 200:
            spend += float(b["amount"])
            log(f"cancelled bid {b['id']} ({b['amount']}): " +
                ("below the reserve now" if float(b["amount"]) < floor else "one pending bid is enough"))
    amount = credits(max(floor * strategy["aggressiveness"], floor * 1.01))
    cap = spend * strategy["max_bid_share"]
    if amount > cap:
        amount = credits(max(floor, cap))
    if keep is not None:
        log(f"keeping my pending bid {keep['id']} of {keep['amount']} (reserve now {floor:.6f})")
    elif amount > spend:
        log(f"cannot afford the reserve {floor:.6f} with {spend:.6f} credits: no bid, I will go dormant for good")
    else:
        status, res = api.call("POST", "/market/bid", {"amount": amount, "bundle": bundle},
                               key=env["execution_id"] + ":bid")
        if status == 201:
            log(f"bid {amount} for {bundle} (reserve {floor:.6f} x {strategy['aggressiveness']}, "
                f"capped at {strategy['max_bid_share']:.0%} of {spend:.2f}): {res['id']}")
        else:
            log(f"bid refused ({status}): {res.get('detail')}")

    save_json(STATE_FILE, state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
