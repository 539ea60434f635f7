"""Train poetgen's network on a GPU with JAX, then write an ordinary poetgen bundle.

TensorFlow's GPU build cannot be installed on every GPU machine (ours carry JAX and PyTorch, and
nothing can be downloaded there), and on a 2-core CPU the shipped model's recipe takes hours. This
script trains exactly the network `poetgen.model.build_model` describes (embedding, LSTM layers with
Keras' gate order, optional projection, tied or dense output), on exactly the data `poetgen train`
uses (the same corpus, hash split, tokenizer, control prefixes and token stream), and keeps the
weights under Keras' layer names, so `bundle` turns them into a bundle that every poetgen command
reads. Three steps, the middle one on the GPU machine:

    python scripts/train_jax.py prepare --out runs/data --conditioned        # poetgen's data, as arrays
    python scripts/train_jax.py train --data runs/data --out runs/w --units 768 --projection 256 \\
        --tie-embeddings --minutes 7                                          # JAX; GPU if there is one
    python scripts/train_jax.py bundle --data runs/data --weights runs/w/weights.npz --out runs/model

`train` is budgeted in wall time (the learning rate warms up and follows a cosine over the budget), so
it fits a lease of fixed length; it measures held-out loss as it goes and writes the best weights
(float16, to fit small transfer limits; `bundle` widens them back to float32) after every
improvement, so a kill loses only the time since then.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------- prepare
def prepare(args) -> None:
    """poetgen train's Run.prepare, written as arrays: train stream(s), held-out poems, tokenizer."""
    from poetgen.control import Prefixer, control_vocabulary, vocabulary_texts
    from poetgen.corpus import corpus_hash, is_held_out, shipped_label
    from poetgen.importers import load_corpus
    from poetgen.tokenizer import Tokenizer
    from poetgen.windows import token_stream

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    poems = load_corpus(args.corpus)
    train_poems = [p for p in poems if not is_held_out(p.text, args.val_split)]
    held_poems = [p for p in poems if is_held_out(p.text, args.val_split)]
    train = [p.text for p in train_poems]
    controls = control_vocabulary(train_poems, args.top_tunes) if args.conditioned else ()
    tokenizer = Tokenizer.build(vocabulary_texts(train, args.conditioned, args.min_count), args.min_count, controls)
    tokenizer.save(out / "tokenizer.json")
    prefixer = Prefixer(tokenizer)
    prefixes = [prefixer.for_poem(p, args.titles) for p in train_poems]   # held-out poems read no title
    held_prefixes = [prefixer.for_poem(p) for p in held_poems]
    train_ids = 0
    for reverse, suffix in ((False, ""), (True, "_reverse")):
        stream = token_stream(tokenizer, train, prefixes, reverse)
        train_ids = len(stream)   # the same either way: reversing keeps every id
        np.save(out / f"train{suffix}.npy", stream.astype(np.uint16 if tokenizer.vocab_size < 65536 else np.int32))
        held = [tokenizer.encode(p.text[::-1] if reverse else p.text) for p in held_poems]
        lengths = np.array([len(t) for t in held], np.int32)
        np.savez(out / f"held_out{suffix}.npz", ids=np.concatenate([np.asarray(t, np.int32) for t in held]),
                 lengths=lengths, prefix_ids=np.concatenate([np.asarray(p, np.int32) for p in held_prefixes]),
                 prefix_lengths=np.array([len(p) for p in held_prefixes], np.int32))
    meta = {"vocab_size": tokenizer.vocab_size, "min_count": args.min_count, "conditioned": args.conditioned,
            "titles": args.titles,
            "top_tunes": args.top_tunes, "val_split": args.val_split,
            "corpus": {"path": str(args.corpus or shipped_label()), "hash": corpus_hash(poems), "poems": len(poems),
                       "train_chars": int(train_ids),
                       "held_out_chars": int(sum(len(p.text) + 1 for p in held_poems))}}
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"prepared {len(train_poems):,} training poems ({len(stream):,} ids), {len(held_poems):,} held out, "
          f"vocabulary {tokenizer.vocab_size} in {out}", flush=True)


def held_out_batches(data: Path, reverse: bool, boundary: int, tokens_per_batch: int, poems: int = 0,
                     style_id: int | None = None):
    """Held-out poems as (x, y, mask) batches, scored as poetgen scores them: boundary, prefix (read,
    not scored), the poem, a closing boundary; each from a fresh state. Poems are bucketed by length
    into a few widths, and each batch is padded to its bucket's row count, so few shapes compile.
    `poems` > 0 keeps a fixed random sample of that many; `style_id` keeps the poems whose prefix
    starts with that control (e.g. `<tang>`)."""
    held = np.load(data / f"held_out{'_reverse' if reverse else ''}.npz")
    ids, lengths = held["ids"], held["lengths"]
    prefix_ids, prefix_lengths = held["prefix_ids"], held["prefix_lengths"]
    starts, prefix_starts = np.cumsum(lengths) - lengths, np.cumsum(prefix_lengths) - prefix_lengths
    chosen = range(len(lengths))
    if poems:
        chosen = np.sort(np.random.default_rng(0).permutation(len(lengths))[:poems])
    rows = []
    for i in chosen:
        prefix = prefix_ids[prefix_starts[i]:prefix_starts[i] + prefix_lengths[i]].tolist()
        poem = ids[starts[i]:starts[i] + lengths[i]].tolist()
        if style_id is not None and prefix[:1] != [style_id]:
            continue
        rows.append(([boundary] + prefix + poem + [boundary], len(prefix)))
    rows.sort(key=lambda r: len(r[0]))
    batches, width = [], 32
    while rows:
        bucket = [r for r in rows if len(r[0]) - 1 <= width]
        rows = rows[len(bucket):]
        per_batch = max(1, tokens_per_batch // width)
        for start in range(0, len(bucket), per_batch):
            x = np.zeros((per_batch, width), np.int32)
            y = np.zeros((per_batch, width), np.int32)
            mask = np.zeros((per_batch, width), np.float32)
            for row, (sequence, skip) in enumerate(bucket[start:start + per_batch]):
                x[row, :len(sequence) - 1] = sequence[:-1]
                y[row, :len(sequence) - 1] = sequence[1:]
                mask[row, skip:len(sequence) - 1] = 1.0
            batches.append((x, y, mask))
        width *= 2
    return batches


# ---------------------------------------------------------------------------------------- model
@dataclasses.dataclass(frozen=True)
class Shape:
    vocab_size: int
    layers: int = 1
    units: int = 768
    embedding_dim: int = 256
    projection: int = 256
    tie_embeddings: bool = True

    @property
    def output_inputs(self) -> int:
        return self.projection or self.units


def init_params(shape: Shape, seed: int) -> dict[str, list[np.ndarray]]:
    """Keras' initialisers for these layers: uniform embedding, Glorot kernels, orthogonal recurrent
    kernels, zero biases with LSTM's forget-gate bias at 1 (unit_forget_bias)."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in, fan_out):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    def orthogonal(rows, cols):
        q, r = np.linalg.qr(rng.standard_normal((cols, rows)))
        return (q * np.sign(np.diag(r))).T[:rows, :cols].astype(np.float32)

    params = {"embedding": [rng.uniform(-0.05, 0.05, (shape.vocab_size, shape.embedding_dim)).astype(np.float32)]}
    inputs = shape.embedding_dim
    for i in range(shape.layers):
        bias = np.zeros(4 * shape.units, np.float32)
        bias[shape.units:2 * shape.units] = 1.0
        params[f"rnn_{i}"] = [glorot(inputs, 4 * shape.units), orthogonal(shape.units, 4 * shape.units), bias]
        inputs = shape.units
    if shape.projection:
        params["projection"] = [glorot(shape.units, shape.projection), np.zeros(shape.projection, np.float32)]
    if not shape.tie_embeddings:
        params["logits"] = [glorot(shape.output_inputs, shape.vocab_size), np.zeros(shape.vocab_size, np.float32)]
    return params


@dataclasses.dataclass(frozen=True)
class Dropouts:
    embedding: float = 0.0   # whole character vectors (Keras Dropout with noise_shape (batch, time, 1))
    inputs: float = 0.0      # each LSTM's inputs, one mask per sequence (Keras LSTM dropout)
    recurrent: float = 0.0   # each LSTM's hidden state, one mask per sequence (Keras recurrent_dropout)
    output: float = 0.0      # the last LSTM's outputs (Keras Dropout)


def forward(params, ids, shape: Shape, dropouts: Dropouts = Dropouts(), key=None):
    """Logits (batch, time, vocab) of ids (batch, time): poetgen.model.build_model's function."""
    import jax
    import jax.numpy as jnp

    training = key is not None
    keys = iter(jax.random.split(key, 4 + 2 * shape.layers)) if training else None

    def drop(x, rate, noise_shape):
        if not training or rate == 0:
            return x
        keep = jax.random.bernoulli(next(keys), 1.0 - rate, noise_shape)
        return jnp.where(keep, x / (1.0 - rate), 0.0)

    batch, time_steps = ids.shape
    x = params["embedding"][0][ids]
    x = drop(x, dropouts.embedding, (batch, time_steps, 1))
    for i in range(shape.layers):
        kernel, recurrent, bias = params[f"rnn_{i}"]
        x = drop(x, dropouts.inputs, (batch, 1, x.shape[-1]))
        hidden_mask = drop(jnp.ones((batch, shape.units), x.dtype), dropouts.recurrent, (batch, shape.units))
        projected = jnp.swapaxes(x @ kernel + bias, 0, 1)   # (time, batch, 4 units)
        units = shape.units

        def cell(carry, z_in, recurrent=recurrent, hidden_mask=hidden_mask, units=units):
            h, c = carry
            z = z_in + (h * hidden_mask) @ recurrent
            i_gate = jax.nn.sigmoid(z[:, :units])
            f_gate = jax.nn.sigmoid(z[:, units:2 * units])
            candidate = jnp.tanh(z[:, 2 * units:3 * units])
            o_gate = jax.nn.sigmoid(z[:, 3 * units:])
            c = f_gate * c + i_gate * candidate
            h = o_gate * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((batch, units), x.dtype)
        _, outputs = jax.lax.scan(cell, (zeros, zeros), projected)
        x = jnp.swapaxes(outputs, 0, 1)
    x = drop(x, dropouts.output, x.shape)
    if shape.projection:
        kernel, bias = params["projection"]
        x = x @ kernel + bias
    if shape.tie_embeddings:
        return x @ params["embedding"][0].T
    kernel, bias = params["logits"]
    return x @ kernel + bias


def masked_loss(params, x, y, mask, shape: Shape, dropouts: Dropouts = Dropouts(), key=None):
    """(sum of -log p over mask, mask count)."""
    import jax
    import jax.numpy as jnp

    logits = forward(params, x, shape, dropouts, key).astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    return -(picked * mask).sum(), mask.sum()


# ---------------------------------------------------------------------------------------- train
def save_weights(params, path: Path, dtype=np.float16) -> None:
    flat = {f"{name}/{k}": np.asarray(w, np.float32).astype(dtype) for name, ws in params.items()
            for k, w in enumerate(ws)}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **flat)
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, list[np.ndarray]]:
    data = np.load(path)
    params: dict[str, dict[int, np.ndarray]] = {}
    for key in data.files:
        name, k = key.rsplit("/", 1)
        params.setdefault(name, {})[int(k)] = data[key].astype(np.float32)
    return {name: [ws[k] for k in sorted(ws)] for name, ws in params.items()}


def weights_from_bundle(bundle: Path) -> dict[str, list[np.ndarray]]:
    """A poetgen bundle's weights under this script's names, read from its model.keras with h5py alone
    (no Keras: the GPU machine has none), so a later lease continues the shipped model itself."""
    import io
    import zipfile

    import h5py

    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))["model"]
    if config.get("cell", "lstm") != "lstm" or not config.get("tie_embeddings") or not config.get("projection"):
        raise SystemExit(f"{bundle}: --init reads bundles of tied LSTM models with a projection only")
    with zipfile.ZipFile(bundle / "model.keras") as archive:
        h5 = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    layers = h5["layers"]

    def variables(group) -> list[np.ndarray]:
        group = group["cell"] if "cell" in group else group
        return [np.asarray(group["vars"][k], np.float32) for k in sorted(group["vars"], key=int)]

    def numbered(prefix: str) -> list[str]:   # Keras names repeats lstm, lstm_1, lstm_2...
        names = [n for n in layers if n == prefix or (n.startswith(prefix + "_") and n[len(prefix) + 1:].isdigit())]
        return sorted(names, key=lambda n: int(n[len(prefix) + 1:] or 0) if n != prefix else 0)

    rnns = numbered("lstm")
    params = {"embedding": variables(layers["reversible_embedding"]),
              **{f"rnn_{i}": variables(layers[name]) for i, name in enumerate(rnns)},
              "projection": variables(layers[numbered("dense")[0]])}
    if len(rnns) != config["layers"]:
        raise SystemExit(f"{bundle}: {len(rnns)} LSTM layers in model.keras, config.json says {config['layers']}")
    return params


def initial_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """--init: a weights.npz this script wrote, or a poetgen bundle directory."""
    return weights_from_bundle(path) if path.is_dir() else load_weights(path)


def style_positions(stream: np.ndarray, boundary: int, style_ids: dict[str, int], weights: dict[str, float]):
    """For --style-weights: each style's token positions (a window starts at one of them) and the share
    of windows it gets. A token belongs to the poem whose boundary precedes it, and a poem's style is the
    control right after its boundary; named styles get their weight, the rest share what is left in
    proportion to their size."""
    bounds = np.flatnonzero(stream == boundary)
    if not len(bounds):
        raise SystemExit("--style-weights: the training stream has no poem boundaries")
    following = stream[np.minimum(bounds + 1, len(stream) - 1)]
    poem_of = np.repeat(np.arange(len(bounds)), np.diff(np.append(bounds, len(stream))))
    token_style = np.full(len(stream), -1, np.int64)
    token_style[bounds[0]:] = following[poem_of]
    unknown = set(weights) - set(style_ids)
    if unknown:
        raise SystemExit(f"--style-weights: no style {', '.join(sorted(unknown))} (styles: {', '.join(style_ids)})")
    named = sum(weights.values())
    if not 0 < named <= 1 or any(w < 0 for w in weights.values()):
        raise SystemExit("--style-weights: weights must be ≥ 0 and add up to at most 1")
    groups = {name: np.flatnonzero(token_style == i) for name, i in style_ids.items()}
    rest = sum(len(g) for name, g in groups.items() if name not in weights)
    shares = {name: weights[name] if name in weights else (1 - named) * len(g) / max(rest, 1)
              for name, g in groups.items()}
    kept = [name for name in groups if shares[name] > 0 and len(groups[name])]
    missing = [name for name in weights if weights[name] > 0 and not len(groups[name])]
    if missing:
        raise SystemExit(f"--style-weights: the training stream has no {', '.join(missing)} poems")
    total = sum(shares[name] for name in kept)
    return kept, [groups[name].astype(np.int32) for name in kept], np.array([shares[name] / total for name in kept])


def parse_style_weights(text: str) -> dict[str, float]:
    try:
        return {name.strip(): float(value) for name, value in (item.split("=") for item in text.split(",") if item)}
    except ValueError:
        raise SystemExit(f"--style-weights: expected e.g. tang=0.5,ci=0.15, got {text!r}") from None


def window_sampler(groups: list[np.ndarray], shares) -> tuple:
    """What draw_windows needs on the device: every group's positions end to end, where each group
    starts and how long it is, and the log of its share of windows."""
    import jax.numpy as jnp

    return (jnp.asarray(np.concatenate(groups)), jnp.asarray(np.cumsum([0] + [len(g) for g in groups[:-1]]), jnp.int32),
            jnp.asarray([len(g) for g in groups], jnp.int32), jnp.log(jnp.asarray(shares, jnp.float32)))


def draw_windows(stream, sampler, key, batch: int, seq_len: int):
    """batch windows of seq_len + 1 ids: each row picks a group by its share, then a start among that
    group's positions (a window may run on into the poems after its start)."""
    import jax
    import jax.numpy as jnp

    positions, group_starts, group_sizes, log_shares = sampler
    key_group, key_start = jax.random.split(key)
    group = jax.random.categorical(key_group, log_shares, shape=(batch,))
    picks = jax.random.randint(key_start, (batch,), 0, group_sizes[group])
    starts = jnp.minimum(positions[group_starts[group] + picks], stream.shape[0] - seq_len - 1)
    return stream[starts[:, None] + jnp.arange(seq_len + 1)]


def learning_rate(fraction: float, peak: float, warmup: float) -> float:
    """Linear warm-up over the first `warmup` of the budget, then a cosine down to 5 % of the peak."""
    if fraction < warmup:
        return peak * fraction / warmup
    progress = min(1.0, (fraction - warmup) / (1.0 - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(args) -> None:
    import jax
    import jax.numpy as jnp
    import optax

    if not 0 <= args.average_after < 1:
        raise SystemExit(f"--average-after must be in [0, 1) (a share of the budget; 0: off), not {args.average_after}")
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))
    from poetgen.tokenizer import BOUNDARY

    shape = Shape(meta["vocab_size"], args.layers, args.units, args.embedding_dim, args.projection,
                  args.tie_embeddings)
    dropouts = Dropouts(args.embedding_dropout, args.dropout, args.recurrent_dropout, args.dropout)
    suffix = "_reverse" if args.reverse else ""
    batch, seq_len = args.batch_size, args.seq_len
    host_stream = np.load(data / f"train{suffix}.npy").astype(np.int32)
    stream = jnp.asarray(host_stream)
    held_out = [tuple(jnp.asarray(a) for a in batch)
                for batch in held_out_batches(data, args.reverse, BOUNDARY, args.eval_tokens, args.held_out_poems)]
    style_ids = {}
    if args.style_weights or args.select_style:
        from poetgen.control import STYLES, style_token
        from poetgen.tokenizer import Tokenizer

        tokenizer = Tokenizer.load(data / "tokenizer.json")
        style_ids = {name: tokenizer.control_id(style_token(name)) for name in STYLES
                     if tokenizer.has_control(style_token(name))}
        if not style_ids:
            raise SystemExit("--style-weights/--select-style need data prepared with --conditioned")
    selected = []
    if args.select_style:
        if args.select_style not in style_ids:
            raise SystemExit(f"--select-style: no style {args.select_style} (styles: {', '.join(style_ids)})")
        selected = [tuple(jnp.asarray(a) for a in batch)
                    for batch in held_out_batches(data, args.reverse, BOUNDARY, args.eval_tokens,
                                                  args.held_out_poems, style_ids[args.select_style])]
        if not selected:
            raise SystemExit(f"--select-style: no held-out {args.select_style} poems")
    # windows start anywhere in the stream, or (--style-weights) first pick a style, then a start in it
    if args.style_weights:
        names, groups, shares = style_positions(host_stream, BOUNDARY, style_ids,
                                                parse_style_weights(args.style_weights))
    else:
        names, groups, shares = ["all"], [np.arange(len(host_stream) - seq_len - 1, dtype=np.int32)], np.ones(1)
    sampler = window_sampler(groups, shares)
    del host_stream, groups
    start = initial_weights(Path(args.init)) if args.init else init_params(shape, args.seed)
    params = jax.tree_util.tree_map(jnp.asarray, start)
    optimizer = optax.chain(optax.clip_by_global_norm(args.clipnorm),
                            optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=args.weight_decay))
    opt_state = optimizer.init(params)
    ones = jnp.ones((batch, seq_len), jnp.float32)

    @jax.jit
    def step(params, opt_state, stream, sampler, key, lr):
        key_windows, key_drop = jax.random.split(key)
        windows = draw_windows(stream, sampler, key_windows, batch, seq_len)

        def loss_fn(p):
            total, count = masked_loss(p, windows[:, :-1], windows[:, 1:], ones, shape, dropouts, key_drop)
            return total / count

        loss, grads = jax.value_and_grad(loss_fn)(params)
        opt_state[1].hyperparams["learning_rate"] = lr
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def average_in(average, params, count):   # --average-after: the running mean of the iterates
        return jax.tree_util.tree_map(lambda a, p: a + (p - a) / count, average, params)

    @jax.jit
    def held_loss(params, x, y, mask):
        return masked_loss(params, x, y, mask, shape)

    def evaluate(params, batches) -> float:
        total, count = 0.0, 0.0
        for x, y, mask in batches:
            t, c = held_loss(params, x, y, mask)
            total, count = total + float(t), count + float(c)
        return total / count

    n_params = sum(int(np.prod(w.shape)) for ws in params.values() for w in ws)
    print(f"{jax.devices()[0].platform}: {n_params:,} parameters, {shape}, {dropouts}, reverse={args.reverse}, "
          f"{len(stream):,} training ids, {sum(int(m.any(1).sum()) for _, _, m in held_out)} held-out poems, "
          f"budget {args.minutes} min, window shares {dict(zip(names, np.round(shares, 3).tolist()))}", flush=True)
    budget = args.minutes * 60.0
    key = jax.random.PRNGKey(args.seed)
    log, best, best_all, steps, tokens, loss = [], None, None, 0, 0, None   # loss: the last step's
    average, averaged = None, 0   # --average-after: the mean of the iterates since then, and how many
    started = time.monotonic()
    next_eval = args.eval_every
    record = {"shape": dataclasses.asdict(shape), "dropouts": dataclasses.asdict(dropouts), "reverse": args.reverse,
              "batch_size": batch, "seq_len": seq_len, "learning_rate": args.learning_rate,
              "weight_decay": args.weight_decay, "minutes": args.minutes, "seed": args.seed, "init": args.init,
              "style_weights": args.style_weights, "select_style": args.select_style,
              "average_after": args.average_after,
              "device": str(jax.devices()[0]), "log": log}
    while True:
        elapsed = time.monotonic() - started
        done = elapsed >= budget or (args.max_steps and steps >= args.max_steps)
        if done or elapsed >= next_eval:
            scored = average if average is not None else params   # once averaging, the mean is the model
            val = evaluate(scored, held_out)
            chosen_by = evaluate(scored, selected) if selected else val   # --select-style: its poems decide
            improved = best is None or chosen_by < best
            if improved:
                best, best_all = chosen_by, val
            log.append({"step": steps, "seconds": round(elapsed, 1), "tokens": tokens,
                        "train_loss": round(float(loss), 4) if loss is not None else None,
                        "held_out_perplexity": round(math.exp(val), 2)})
            if selected:
                log[-1][f"{args.select_style}_perplexity"] = round(math.exp(chosen_by), 2)
            if average is not None:   # the last iterate's, for comparison
                log[-1].update(averaged_steps=averaged, last_iterate_perplexity=round(
                    math.exp(evaluate(params, held_out)), 2))
            print(json.dumps(log[-1]), flush=True)
            if improved:
                save_weights(scored, out / "weights.npz")
                record.update(best_step=steps, best_tokens=tokens, best_seconds=round(elapsed, 1))   # what was saved
            record.update(best_held_out_perplexity=round(math.exp(best_all), 2), steps=steps, tokens=tokens)
            if selected:
                record[f"best_{args.select_style}_perplexity"] = round(math.exp(best), 2)
            (out / "train.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
            next_eval = elapsed + args.eval_every
            if done:
                break
        key, sub = jax.random.split(key)
        fraction = elapsed / budget if not args.max_steps else steps / args.max_steps
        params, opt_state, loss = step(params, opt_state, stream, sampler, sub, jnp.float32(
            learning_rate(fraction, args.learning_rate, args.warmup)))
        steps += 1
        tokens += batch * seq_len
        if args.average_after and fraction >= args.average_after:
            averaged += 1
            average = params if average is None else average_in(average, params, jnp.float32(averaged))
    print(f"done: {steps} steps, {tokens:,} tokens, best held-out perplexity {math.exp(best_all):.2f}"
          + (f" ({args.select_style} {math.exp(best):.2f}, which chose it)" if selected else ""), flush=True)


# ---------------------------------------------------------------------------------------- bundle
def chosen_point(record: dict) -> dict:
    """A stage's record as of the weights it kept (the best scoring, not the last step): its steps,
    tokens and seconds then, and its all-genre held-out perplexity there."""
    key = f"{record['select_style']}_perplexity" if record.get("select_style") else "held_out_perplexity"
    if "best_step" in record:   # recorded when the weights were saved (the log's figures are rounded)
        best = next(entry for entry in record["log"] if entry["step"] == record["best_step"])
        return {**record, "steps": best["step"], "tokens": best["tokens"], "seconds": best["seconds"],
                "best_held_out_perplexity": best["held_out_perplexity"]}
    scored = [entry for entry in record["log"] if entry.get(key) is not None]
    if not scored:
        return {**record, "seconds": 0.0}
    best = min(scored, key=lambda entry: entry[key])   # a record written before best_step was
    return {**record, "steps": best["step"], "tokens": best["tokens"], "seconds": best["seconds"],
            "best_held_out_perplexity": best["held_out_perplexity"]}


def bundle(args) -> None:
    """A poetgen bundle (model.keras, tokenizer.json, config.json) from trained weights."""
    from poetgen import __version__
    from poetgen.bundle import save_bundle
    from poetgen.callbacks import inference_copy
    from poetgen.model import ModelConfig, build_model
    from poetgen.tokenizer import Tokenizer

    data = Path(args.data)
    meta = json.loads((data / "meta.json").read_text(encoding="utf-8"))
    trained = chosen_point(json.loads((Path(args.weights).parent / "train.json").read_text(encoding="utf-8")))
    stages = [chosen_point(json.loads(Path(p).read_text(encoding="utf-8"))) for p in args.earlier] + [trained]
    before = json.loads((Path(args.earlier_bundle) / "config.json").read_text(encoding="utf-8")) \
        if args.earlier_bundle else None
    weights = load_weights(Path(args.weights))
    shape, dropouts = trained["shape"], trained["dropouts"]
    config = ModelConfig(vocab_size=shape["vocab_size"], cell="lstm", layers=shape["layers"], units=shape["units"],
                         embedding_dim=shape["embedding_dim"], dropout=dropouts["inputs"],
                         projection=shape["projection"], tie_embeddings=shape["tie_embeddings"],
                         embedding_dropout=dropouts["embedding"], recurrent_dropout=dropouts["recurrent"])
    model = build_model(dataclasses.replace(config, dropout=0.0, embedding_dropout=0.0, recurrent_dropout=0.0),
                        dtype="float32")
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])
    import keras

    stage_keys = ("minutes", "learning_rate", "seed", "steps", "tokens", "best_held_out_perplexity", "dropouts",
                  "device", "batch_size", "style_weights", "select_style")
    progress = {"steps": sum(stage["steps"] for stage in stages),
                "tokens_seen": sum(stage["tokens"] for stage in stages),
                "wall_time_s": sum(stage["seconds"] for stage in stages)}
    if before:   # --earlier-bundle: the stages that made that bundle come first
        progress = {k: round(before["progress"][k] + v, 1) if k == "wall_time_s" else before["progress"][k] + v
                    for k, v in progress.items()}
    record = {"model": dataclasses.asdict(config),
              "train": {"trainer": "scripts/train_jax.py", "reverse": trained["reverse"],
                        "conditioned": meta["conditioned"], "top_tunes": meta["top_tunes"],
                        "titles": meta.get("titles", False),
                        "min_count": meta["min_count"], "val_split": meta["val_split"],
                        "batch_size": trained["batch_size"], "seq_len": trained["seq_len"],
                        "learning_rate": trained["learning_rate"], "weight_decay": trained["weight_decay"],
                        "device": trained["device"],
                        "stages": (before["train"]["stages"] if before else [])
                        + [{k: stage.get(k) for k in stage_keys} for stage in stages]},
              "corpus": meta["corpus"],
              "versions": {"poetgen": __version__, "keras": keras.__version__, "numpy": np.__version__},
              "progress": progress,
              "metrics": {"best_val_perplexity": trained["best_held_out_perplexity"],
                          "best_val_loss": math.log(trained["best_held_out_perplexity"])},
              "log": (before["log"] if before else []) + [entry for stage in stages for entry in stage["log"]]}
    save_bundle(Path(args.out), inference_copy(model, config), Tokenizer.load(data / "tokenizer.json"), record)
    print(f"wrote {args.out}: {model.count_params():,} parameters, held-out perplexity "
          f"{trained['best_held_out_perplexity']}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="poetgen's training data as arrays")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus", default=None, help="corpus file or directory (default: the shipped corpus)")
    p.add_argument("--conditioned", action="store_true", help="control prefixes (style, form or tune)")
    p.add_argument("--top-tunes", type=int, default=200)
    p.add_argument("--titles", action="store_true", help="read shi titles after the controls (poetgen train --titles)")
    p.add_argument("--min-count", type=int, default=3)
    p.add_argument("--val-split", type=float, default=0.02)
    p = commands.add_parser("train", help="train in JAX for a wall-time budget")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reverse", action="store_true", help="train on reversed poems (the best-of reranker)")
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--units", type=int, default=768)
    p.add_argument("--embedding-dim", type=int, default=256)
    p.add_argument("--projection", type=int, default=256)
    p.add_argument("--tie-embeddings", action="store_true")
    p.add_argument("--dropout", type=float, default=0.15, help="LSTM inputs and the last LSTM's outputs")
    p.add_argument("--embedding-dropout", type=float, default=0.05)
    p.add_argument("--recurrent-dropout", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--warmup", type=float, default=0.03, help="share of the budget spent warming up")
    p.add_argument("--clipnorm", type=float, default=1.0)
    p.add_argument("--minutes", type=float, default=7.0, help="wall-time budget")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (tests); 0: budget only")
    p.add_argument("--eval-every", type=float, default=45.0, help="seconds between held-out evaluations")
    p.add_argument("--eval-tokens", type=int, default=65536, help="padded positions per held-out batch")
    p.add_argument("--held-out-poems", type=int, default=0, help="score this many held-out poems; 0: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="start from these weights (a weights.npz of the same shape, or a "
                   "poetgen bundle directory): a second budget with its own warm-up and cosine, e.g. on a later lease")
    p.add_argument("--style-weights", default="", help="share of training windows per style, e.g. tang=0.5,ci=0.15 "
                   "(the other styles share the rest by size; default: windows start anywhere, by size)")
    p.add_argument("--average-after", type=float, default=0.0,
                   help="from this share of the budget on, score and save the mean of the weights after each step "
                        "(iterate averaging, as AWD-LSTM's averaged SGD); 0: off")
    p.add_argument("--select-style", default="", help="keep the weights that score best on this style's held-out "
                   "poems (default: on all held-out poems)")
    p = commands.add_parser("bundle", help="write a poetgen bundle from trained weights")
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--earlier", nargs="*", default=[], help="train.json of the stages that --init continued")
    p.add_argument("--earlier-bundle", default=None, help="the bundle that --init continued: its stages, progress "
                   "and log come first in the new bundle's config.json")
    args = parser.parse_args(argv)
    {"prepare": prepare, "train": train, "bundle": bundle}[args.command](args)


if __name__ == "__main__":
    main()
