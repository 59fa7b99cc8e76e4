"""
cge: embeddings from Python, in-process, over libcge (the public C API of include/cge.h).

    import cge
    engine = cge.Engine()                       # the demo ensemble when none is given
    v = engine.embed("The quick brown fox")     # float32 numpy array, shape (1536,)

Key design decision: a thin ctypes layer, no compiled extension. Inputs become an array of
struct cge_input pointing straight at the Python bytes (nothing copied); results land in numpy
arrays (Model and Provider write straight into the numpy buffer; the engine's fused rows are one
memmove each out of the library-owned result, which is then freed at once). ctypes releases the
GIL during every library call, so Python threads embed in parallel on one engine; close() waits
for the calls running on other threads before it frees the handle, and the engines, models and
providers still open when the interpreter exits are closed by an atexit hook, before the modules
they need are torn down.

Surfaces: Engine (the ensemble: fused vector, slot vectors, gate), Model (one model folder),
Provider (the context-graph EmbeddingProvider), each with sentence-transformers' encode() and
LangChain's embed_documents()/embed_query() shapes (LangChain itself is not imported).
"""
import atexit
import collections
import ctypes
import os
import sys
import threading
import weakref

import numpy as np

from . import _capi
from ._capi import LibraryNotFoundError, library_path
from .errors import *  # noqa: F401,F403 (the exception classes are part of the package API)
from .errors import BY_STATUS, ClosedError, Error, make as _make_error

__version__ = "0.1.0"  # CGE_VERSION_STRING of the cge.h this binding mirrors

__all__ = ["Engine", "Model", "Provider", "Result", "SlotResult", "Error", "ClosedError",
           "LibraryNotFoundError", "library_path", "demo_ensemble_path", "slot_table",
           "set_threads", "get_threads", "status_str", "FUSED_DIM", "N_SLOTS",
           "__version__"] + [c.__name__ for c in BY_STATUS.values()]

N_SLOTS = _capi.CGE_N_SLOTS
FUSED_DIM = _capi.CGE_FUSED_DIM
SLOT_NAMES = tuple("E%d" % (i + 1) for i in range(N_SLOTS))

_lib = _capi.lib


# ==== Module functions ==========================================================================
def status_str(status):
    """The English name of a status number ("input too long")."""
    return _lib().cge_status_str(int(status)).decode()


def _errmsg():
    return (_lib().cge_errmsg() or b"").decode("utf-8", "replace")


def _raise(status, what=None):
    msg = _errmsg() or status_str(status)
    raise _make_error(status, "%s: %s" % (what, msg) if what else msg)


def _check(status, what=None):
    if status != 0:
        _raise(status, what)


def set_threads(n):
    """Compute threads for every engine and model of the process (0 = one per core)."""
    _lib().cge_set_threads(int(n))


def get_threads():
    return _lib().cge_get_threads()


def demo_ensemble_path():
    """The demo ensemble's folder (tiny random weights: well-formed vectors that mean nothing),
    or None when it cannot be found (CGE_DEMO overrides)."""
    p = _lib().cge_demo_ensemble_path()
    return os.fsdecode(p) if p else None


def _modalities(bits):
    return [name for bit, name in _capi.MODALITY_NAMES if bits & bit]


def slot_table():
    """The twelve slots of cge's model table (the full-size models), as dicts."""
    out = []
    for i in range(N_SLOTS):
        s = _lib().cge_slot_get(i).contents
        out.append({"slot": s.name.decode(), "index": i, "hf_id": s.hf_id.decode(),
                    "family": s.family.decode(), "dim": s.dim, "max_tokens": s.max_tokens,
                    "modalities": _modalities(s.modalities), "normalize": bool(s.normalize)})
    return out


def _slot_index(slot):
    """"E1".."E12" or a 0-based index -> 0-based index."""
    if isinstance(slot, str):
        s = slot.strip().upper()
        if s in SLOT_NAMES:
            return SLOT_NAMES.index(s)
        raise ValueError("cge: no slot %r (slots are E1..E12)" % slot)
    i = int(slot)
    if not 0 <= i < N_SLOTS:
        raise ValueError("cge: slot index %d out of range (0..11; or give 'E1'..'E12')" % i)
    return i


# ==== Inputs ====================================================================================
_INPUT_KEYS = frozenset(("text", "code", "language", "role", "instruction", "image", "audio",
                         "ids", "input_ids"))
_CONTENT_KEYS = ("text", "code", "image", "audio", "ids", "input_ids")
_ROLES = {None: _capi.ROLE_DOCUMENT, "document": _capi.ROLE_DOCUMENT, "passage":
          _capi.ROLE_DOCUMENT, "query": _capi.ROLE_QUERY}


def _cstr(s, what):
    """A NUL-terminated C string argument (str or bytes)."""
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise ValueError("cge: %s contains a NUL character" % what)
    return b


def _media(inp, kind, value, keep, i):
    """image/audio as a path (str or os.PathLike) or as the encoded file's bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        buf = value if isinstance(value, bytes) else bytes(value)
        keep.append(buf)
        setattr(inp, kind + "_data", ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p))
        setattr(inp, kind + "_len", len(buf))
    elif isinstance(value, (str, os.PathLike)):
        setattr(inp, kind + "_path", _cstr(os.fsencode(value), "input %d: %s path" % (i, kind)))
    else:
        raise TypeError("cge: input %d: %s must be a path or bytes, not %s"
                        % (i, kind, type(value).__name__))


def _make_inputs(items, role=None, instruction=None):
    """A ctypes array of struct cge_input for items (str or dict each), and the objects it
    points into (to be kept alive for the call). role/instruction: defaults for every item."""
    n = len(items)
    arr = (_capi.cge_input * n)()
    keep = []
    for i, item in enumerate(items):
        inp = arr[i]
        if isinstance(item, str):
            b = item.encode("utf-8")
            inp.text = b
            inp.text_len = len(b)
            r, ins = role, instruction
        elif isinstance(item, dict):
            bad = [k for k in item if k not in _INPUT_KEYS]
            if bad:
                raise ValueError("cge: input %d: unknown key %r (an input has one of text, code, "
                                 "image, audio, ids; and optionally role, instruction, language)"
                                 % (i, bad[0]))
            content = [k for k in _CONTENT_KEYS if k in item]
            if len(content) != 1:
                raise ValueError("cge: input %d: give exactly one of text, code, image, audio, "
                                 "ids (got %s)" % (i, ", ".join(content) or "none"))
            k = content[0]
            v = item[k]
            if k in ("text", "code"):
                if not isinstance(v, str):
                    raise TypeError("cge: input %d: %s must be a str, not %s"
                                    % (i, k, type(v).__name__))
                b = v.encode("utf-8")
                inp.text = b
                inp.text_len = len(b)
                if k == "code":
                    inp.is_code = 1
                    if item.get("language") is not None:
                        inp.language = _cstr(item["language"], "input %d: language" % i)
            elif k in ("image", "audio"):
                _media(inp, k, v, keep, i)
            else:
                ids = np.ascontiguousarray(v, dtype=np.int32)
                if ids.ndim != 1:
                    raise ValueError("cge: input %d: ids must be a flat list of ints" % i)
                keep.append(ids)
                inp.ids = ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
                inp.n_ids = ids.shape[0]
            r = item.get("role", role)
            ins = item.get("instruction", instruction)
        else:
            raise TypeError("cge: input %d: expected a str or a dict, not %s (bytes are only "
                            "taken as {'image': ...} or {'audio': ...})" % (i, type(item).__name__))
        if r not in _ROLES:
            raise ValueError("cge: input %d: role must be 'query' or 'document', not %r" % (i, r))
        inp.role = _ROLES[r]
        if ins is not None:
            inp.instruction = _cstr(ins, "input %d: instruction" % i)
    return arr, keep


def _as_list(inputs):
    """(list of inputs, True when a single input was given)."""
    if isinstance(inputs, (str, dict)):
        return [inputs], True
    if isinstance(inputs, (bytes, bytearray)):
        raise TypeError("cge: bytes are not an input; give {'image': data} or {'audio': data}, "
                        "or decode text to str")
    return list(inputs), False


# ==== Handle lifetime ===========================================================================
_live = weakref.WeakSet()


@atexit.register
def _close_all():
    # Runs before the interpreter tears down modules, so close() still has ctypes and the
    # library; an engine left open is freed cleanly instead of at a random point of teardown.
    for h in list(_live):
        try:
            h.close()
        except Exception:
            pass


class _Handle:
    """A library handle that several threads may use at once; close() waits for the calls
    in flight (the C API requires close to be the last call) and then frees it once."""
    _free_fn = None  # name of the C function that frees the handle
    _kind = "handle"

    def __init__(self):
        self._h = None
        self._cv = threading.Condition(threading.Lock())
        self._users = 0
        self._closing = False

    def _enter(self):
        with self._cv:
            if self._h is None or self._closing:
                raise ClosedError("cge: the %s is closed" % self._kind)
            self._users += 1
            return self._h

    def _leave(self):
        with self._cv:
            self._users -= 1
            if self._users == 0:
                self._cv.notify_all()

    def close(self):
        """Frees the library handle (waits for calls running on other threads). Idempotent."""
        cv = getattr(self, "_cv", None)
        if cv is None:  # __init__ failed before the handle existed
            return
        with cv:
            if self._h is None or self._closing:
                return
            self._closing = True
            while self._users:
                cv.wait()
            h, self._h = self._h, None
        getattr(_lib(), self._free_fn)(h)
        _live.discard(self)

    @property
    def closed(self):
        return self._h is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ==== sentence-transformers and LangChain shapes ===============================================
class _EncodeMixin:
    """encode() as sentence-transformers' SentenceTransformer.encode; embed_documents() and
    embed_query() as LangChain's Embeddings. Subclasses give _embed_texts(texts, role)."""

    def encode(self, sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
               show_progress_bar=False, prompt=None, role=None):
        """Embeds a str (-> 1-D array) or a list of str (-> 2-D float32 array, or a list of
        1-D arrays with convert_to_numpy=False). prompt is prepended to every sentence, as in
        sentence-transformers; role ('query'/'document') is for the engine's E2 and E10."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError("cge: encode: sentence %d is a %s, not a str"
                                % (i, type(t).__name__))
        if prompt:
            texts = [prompt + t for t in texts]
        batch_size = max(1, int(batch_size))
        rows = []
        for b in range(0, len(texts), batch_size):
            rows.append(self._embed_texts(texts[b:b + batch_size], role))
            if show_progress_bar:
                sys.stderr.write("\rcge: %d/%d" % (min(b + batch_size, len(texts)), len(texts)))
        if show_progress_bar:
            sys.stderr.write("\n")
        out = (np.concatenate(rows) if rows
               else np.zeros((0, self.dimension), dtype=np.float32))
        if normalize_embeddings and out.size:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        if single:
            return out[0]
        return out if convert_to_numpy else list(out)

    def embed_documents(self, texts):
        """LangChain Embeddings.embed_documents: list[str] -> list[list[float]]."""
        return self.encode(list(texts), normalize_embeddings=False, role="document").tolist()

    def embed_query(self, text):
        """LangChain Embeddings.embed_query: str -> list[float]."""
        return self.encode(str(text), normalize_embeddings=False, role="query").tolist()


# ==== The engine ================================================================================
SlotResult = collections.namedtuple(
    "SlotResult", "state status error latency_us n_tokens truncated cached version")
SlotResult.__doc__ = ("What a slot did for one input: state 'absent'|'skipped'|'ok'|'failed'; "
                      "error: a cge.Error when it failed, else None.")


class Result:
    """One input's engine result (embed(output='slots' or 'both')).

    embedding: (dim,) float32 fused vector, or None (output='slots', or a failed input);
    slots: {"E1": (dim_s,) float32 or None, ...} the slot vectors before the fusion's per-slot
    normalization (None where the slot is absent, skipped or failed); slot_results: {"E1":
    SlotResult, ...}; expert_weights: (8,) float32 gate distribution; selected: the chosen
    experts, larger weight first; present: the slot mask as a list of names; error: a cge.Error
    when the input failed as a whole (only with return_errors=True), else None."""
    __slots__ = ("embedding", "slots", "slot_results", "expert_weights", "selected", "present",
                 "cached", "latency_us", "n_tokens", "error")

    def __repr__(self):
        if self.error is not None:
            return "<cge.Result error=%r>" % (self.error,)
        return "<cge.Result present=%s selected=%s>" % (",".join(self.present), self.selected)


def _floats(ptr, n):
    a = np.empty(n, dtype=np.float32)
    if n:
        ctypes.memmove(a.ctypes.data, ptr, n * 4)
    return a


def _result(r, index, with_fused, with_slots):
    res = Result()
    res.error = None
    if r.status != 0:
        res.error = _make_error(r.status, "cge: input %d: %s" % (
            index, r.errmsg.decode("utf-8", "replace") or status_str(r.status)), index)
    res.embedding = _floats(r.embedding, r.dim) if (with_fused and r.embedding) else None
    if r.expert_weights and r.n_experts > 0:
        res.expert_weights = _floats(r.expert_weights, r.n_experts)
    else:
        res.expert_weights = None
    res.selected = [r.selected[k] for k in range(r.top_k)] if r.selected else []
    res.present = [SLOT_NAMES[s] for s in range(N_SLOTS) if r.present >> s & 1]
    res.cached = bool(r.cached)
    res.latency_us = r.latency_us
    res.n_tokens = r.n_tokens
    res.slots = {}
    res.slot_results = {}
    for s in range(N_SLOTS):
        sr = r.slots[s]
        name = SLOT_NAMES[s]
        ok = with_slots and sr.state == 2 and bool(sr.vector)
        res.slots[name] = _floats(sr.vector, sr.dim) if ok else None
        err = None
        if sr.state == 3:
            err = _make_error(sr.status, "cge: input %d: %s: %s" % (
                index, name, sr.errmsg.decode("utf-8", "replace") or status_str(sr.status)), index)
        state = _capi.SLOT_STATES[sr.state] if 0 <= sr.state < 4 else str(sr.state)
        res.slot_results[name] = SlotResult(state, sr.status, err, sr.latency_us, sr.n_tokens,
                                            bool(sr.truncated), bool(sr.cached), sr.version)
    return res


_demo_notice_shown = False


class Engine(_Handle, _EncodeMixin):
    """An ensemble: up to twelve model slots and the FuseMoE fusion (cge_engine_*).

    Engine(ensemble_or_config=None, n_threads=0, cache=None, no_truncate=False,
    slot_timeout_ms=0, preload=True). ensemble_or_config: an ensemble folder, an ensemble.json,
    or a cge config file; None: the configured ensemble (CGE_CONFIG, ~/.config/cge/config.json),
    else the demo ensemble (with a notice on stderr, as the command line gives). Any number of
    Python threads may call embed() at once."""
    _free_fn = "cge_engine_close"
    _kind = "engine"
    _PARAMS = ("n_threads", "cache", "no_truncate", "slot_timeout_ms", "preload", "backend")

    def __init__(self, ensemble_or_config=None, **params):
        super().__init__()
        L = _lib()
        p = L.cge_engine_default_params()
        for k, v in params.items():
            if k not in self._PARAMS:
                raise TypeError("cge.Engine: unknown parameter %r (known: %s)"
                                % (k, ", ".join(self._PARAMS)))
            if k == "backend":  # "cpu" (None), "cuda", "cuda:N", "auto"
                p.backend = None if v is None else str(v).encode()
                continue
            if k == "cache":
                v = -1 if v is None else int(bool(v))
            setattr(p, k, int(v))
        path = None if ensemble_or_config is None else os.fsencode(ensemble_or_config)
        h = _capi.engine_p()
        st = L.cge_engine_open(path, ctypes.byref(p), ctypes.byref(h))
        if st != 0 or not h.value:
            _raise(st or 15, "cge.Engine(%r)" % (ensemble_or_config,))
        self._h = h.value
        _live.add(self)
        self.dimension = L.cge_engine_dim(self._h)
        self.name = (L.cge_engine_name(self._h) or b"").decode("utf-8", "replace")
        self.is_demo = bool(L.cge_engine_is_demo(self._h))
        if self.is_demo:
            global _demo_notice_shown
            if not _demo_notice_shown:
                _demo_notice_shown = True
                sys.stderr.write(
                    "cge: no ensemble given: using the demo ensemble (tiny random weights; "
                    "its vectors are well-formed but not semantic)\n")

    def __repr__(self):
        return "<cge.Engine %r%s%s>" % (self.name, " demo" if self.is_demo else "",
                                        " closed" if self.closed else "")

    @property
    def slots(self):
        """The slot table of this ensemble: one dict per slot E1..E12 (dim 0 = absent)."""
        h = self._enter()
        try:
            L = _lib()
            table = slot_table()
            for i, d in enumerate(table):
                d["dim"] = L.cge_engine_slot_dim(h, i)
                d["present"] = d["dim"] > 0
                d["max_tokens"] = L.cge_engine_slot_max_tokens(h, i)
                d["modalities"] = _modalities(L.cge_engine_slot_modalities(h, i))
            return table
        finally:
            self._leave()

    def embed(self, inputs, output="fused", role=None, instruction=None, slots=None, cache=True,
              timeout_ms=0, return_errors=False):
        """Embeds one input or a list of them. An input is a str (text) or a dict: {"text": s}
        or {"code": s, "language": l}, each with optional "role" ('query'/'document') and
        "instruction"; {"image": path_or_bytes}; {"audio": path_or_bytes}. role/instruction
        given here apply to inputs that do not set their own.

        output="fused": a float32 array (n, dim) ((dim,) for a single input); "slots" or
        "both": a list of cge.Result (one Result for a single input); "slots" skips the fusion.
        slots: restrict to these slots ("E1".. or 0-based). An input that fails raises its
        cge.Error naming it, unless return_errors=True: then fused output returns
        (array, errors) with NaN rows and a cge.Error (or None) per input, and Results carry
        .error."""
        if output not in ("fused", "slots", "both"):
            raise ValueError("cge: output must be 'fused', 'slots' or 'both', not %r" % (output,))
        items, single = _as_list(inputs)
        arr, keep = _make_inputs(items, role, instruction)
        opt = _capi.cge_embed_options()
        if slots is not None:
            mask = 0
            for s in slots:
                mask |= 1 << _slot_index(s)
            opt.slots = mask
        opt.no_fusion = 1 if output == "slots" else 0
        opt.no_cache = 0 if cache else 1
        opt.timeout_ms = int(timeout_ms)
        n = len(items)
        res = (_capi.cge_result * n)()
        L = _lib()
        h = self._enter()
        try:
            if n:
                _check(L.cge_engine_embed(h, arr, n, ctypes.byref(opt), res), "cge: embed")
            del keep
            return self._collect(res, n, output, single, return_errors)
        finally:
            for i in range(n):
                L.cge_result_deinit(ctypes.byref(res[i]))
            self._leave()

    def _collect(self, res, n, output, single, return_errors):
        if output == "fused":
            out = np.empty((n, self.dimension), dtype=np.float32)
            errs = [None] * n
            base = out.ctypes.data
            row = self.dimension * 4
            for i in range(n):
                r = res[i]
                if r.status != 0 or not r.embedding or r.dim != self.dimension:
                    msg = r.errmsg.decode("utf-8", "replace") or status_str(r.status or 8)
                    errs[i] = _make_error(r.status or 8, "cge: input %d: %s" % (i, msg), i)
                    if not return_errors:
                        raise errs[i]
                    out[i] = np.nan
                else:
                    ctypes.memmove(base + i * row, r.embedding, row)
            if single:
                return (out[0], errs[0]) if return_errors else out[0]
            return (out, errs) if return_errors else out
        results = []
        for i in range(n):
            r = _result(res[i], i, output == "both", True)
            if r.error is not None and not return_errors:
                raise r.error
            results.append(r)
        return results[0] if single else results

    def _embed_texts(self, texts, role):
        return self.embed(texts, role=role)

    def stats(self):
        """The engine's counters (cge_engine_get_stats) as a dict; "slots" maps E1.. to dicts."""
        st = _capi.cge_engine_stats()
        h = self._enter()
        try:
            _check(_lib().cge_engine_get_stats(h, ctypes.byref(st)), "cge: stats")
        finally:
            self._leave()
        out = {k: getattr(st, k) for k, _ in _capi.cge_engine_stats._fields_ if k != "slots"}
        out["slots"] = {}
        for i in range(N_SLOTS):
            s = st.slots[i]
            d = {k: getattr(s, k) for k, _ in _capi.cge_slot_stats._fields_}
            for k in ("path", "path2", "errmsg"):
                d[k] = d[k].decode("utf-8", "replace")
            d["state"] = (_capi.LOAD_STATES[s.state] if 0 <= s.state < len(_capi.LOAD_STATES)
                          else str(s.state))
            out["slots"][SLOT_NAMES[i]] = d
        return out

    def swap(self, slot, path):
        """Hot-swaps a slot's model for the folder at path (E10: "query=DIR,document=DIR");
        returns the new version. On failure the old model keeps serving and this raises."""
        i = _slot_index(slot)
        ver = ctypes.c_uint64(0)
        h = self._enter()
        try:
            _check(_lib().cge_engine_swap(h, i, os.fsencode(path), ctypes.byref(ver)),
                   "cge: swap %s" % SLOT_NAMES[i])
        finally:
            self._leave()
        return ver.value

    def unload(self, slot):
        """Unloads a slot's model (it reloads on next use)."""
        i = _slot_index(slot)
        h = self._enter()
        try:
            _check(_lib().cge_engine_unload(h, i), "cge: unload %s" % SLOT_NAMES[i])
        finally:
            self._leave()

    def health(self):
        """True when the engine can serve (the fusion and at least one slot are usable)."""
        h = self._enter()
        try:
            return _lib().cge_engine_health(h) == 0
        finally:
            self._leave()

    def tokenize(self, text, slot, role=None):
        """The ids slot reads for text (role picks E2's prefix and E10's encoder)."""
        i = _slot_index(slot)
        b = text.encode("utf-8")
        if role not in _ROLES:
            raise ValueError("cge: role must be 'query' or 'document', not %r" % (role,))
        h = self._enter()
        try:
            return _tokenize(lambda ids, cap: _lib().cge_engine_tokenize(
                h, i, b, len(b), _ROLES[role], ids, cap))
        finally:
            self._leave()


def _tokenize(call):
    cap = 256
    while True:
        ids = (ctypes.c_int32 * cap)()
        n = call(ids, cap)
        if n < 0:
            _raise(11, "cge: tokenize")
        if n <= cap:
            return list(ids[:n])
        cap = int(n)


# ==== One model folder ==========================================================================
class Model(_Handle, _EncodeMixin):
    """One Hugging Face model folder (cge_model_*).

    Model(folder, dtype="f32"|"bf16"|"int8", pooling=None|"cls"|"mean"|"max"|"last",
    no_truncate=False, max_seq_len=0, backend=None|"cpu"|"cuda"|"cuda:N"|"auto"). Read-only
    after load: any number of threads may embed."""
    _free_fn = "cge_model_free"
    _kind = "model"

    def __init__(self, folder, dtype="f32", pooling=None, no_truncate=False, max_seq_len=0,
                 backend=None):
        super().__init__()
        L = _lib()
        p = L.cge_model_default_params()
        if dtype not in _capi.DTYPES:
            raise ValueError("cge.Model: dtype must be one of f32, bf16, int8 (got %r)" % (dtype,))
        if pooling not in _capi.POOLINGS:
            raise ValueError("cge.Model: unknown pooling %r" % (pooling,))
        p.dtype = _capi.DTYPES[dtype]
        p.pooling = _capi.POOLINGS[pooling]
        p.no_truncate = int(bool(no_truncate))
        p.max_seq_len = int(max_seq_len)
        p.backend = None if backend is None else str(backend).encode()
        h = _capi.model_p()
        st = L.cge_model_load(os.fsencode(folder), ctypes.byref(p), ctypes.byref(h))
        if st != 0 or not h.value:
            _raise(st or 2, "cge.Model(%r)" % (os.fspath(folder),))
        self._h = h.value
        _live.add(self)
        self.folder = os.fspath(folder)
        self.dimension = L.cge_model_dim(self._h)
        self.family = (L.cge_model_family(self._h) or b"").decode()
        self.modalities = _modalities(L.cge_model_modalities(self._h))
        self.max_seq_len = L.cge_model_max_seq_len(self._h)

    def __repr__(self):
        return "<cge.Model %r %s dim=%d%s>" % (self.folder, self.family, self.dimension,
                                               " closed" if self.closed else "")

    def embed(self, inputs, instruction=None, return_errors=False):
        """Embeds one input or a list (str; {"text"|"code"|"image"|"audio"|"ids": ...,
        "instruction": ...}) into a float32 array (n, dim) ((dim,) for one input), written
        straight into the numpy buffer. A failed input raises its cge.Error naming it, unless
        return_errors=True: then (array, errors) with zero rows where an input failed."""
        items, single = _as_list(inputs)
        arr, keep = _make_inputs(items, None, instruction)
        n = len(items)
        out = np.zeros((n, self.dimension), dtype=np.float32)
        info = (_capi.cge_embed_info * n)()
        h = self._enter()
        try:
            if n:
                _check(_lib().cge_model_embed(h, arr, n, out.ctypes.data, info), "cge: embed")
        finally:
            self._leave()
        del keep
        errs = [None] * n
        for i in range(n):
            if info[i].status != 0:
                errs[i] = _make_error(info[i].status, "cge: input %d: %s" % (
                    i, info[i].errmsg.decode("utf-8", "replace") or status_str(info[i].status)), i)
                if not return_errors:
                    raise errs[i]
        if single:
            return (out[0], errs[0]) if return_errors else out[0]
        return (out, errs) if return_errors else out

    def _embed_texts(self, texts, role):
        return self.embed(texts)

    def tokenize(self, text):
        """The ids the model reads for text (special tokens, truncation as in embed)."""
        b = text.encode("utf-8")
        h = self._enter()
        try:
            return _tokenize(lambda ids, cap: _lib().cge_model_tokenize(h, b, len(b), ids, cap))
        finally:
            self._leave()


# ==== The EmbeddingProvider =====================================================================
class Provider(_Handle, _EncodeMixin):
    """The context-graph EmbeddingProvider (cge_provider_*): texts embedded as documents into
    the fused vector, written straight into the numpy buffer."""
    _free_fn = "cge_provider_close"
    _kind = "provider"

    def __init__(self, ensemble_or_config=None):
        super().__init__()
        L = _lib()
        h = _capi.provider_p()
        path = None if ensemble_or_config is None else os.fsencode(ensemble_or_config)
        st = L.cge_provider_open(path, ctypes.byref(h))
        if st != 0 or not h.value:
            _raise(st or 15, "cge.Provider(%r)" % (ensemble_or_config,))
        self._h = h.value
        _live.add(self)
        self.dimension = L.cge_provider_dimension(self._h)
        self.model_name = (L.cge_provider_model_name(self._h) or b"").decode("utf-8", "replace")
        self.max_tokens = L.cge_provider_max_tokens(self._h)

    def embed(self, text):
        """One text -> (dimension,) float32."""
        out = np.empty(self.dimension, dtype=np.float32)
        b = _cstr(text, "text")
        h = self._enter()
        try:
            _check(_lib().cge_provider_embed(h, b, out.ctypes.data), "cge: embed")
        finally:
            self._leave()
        return out

    def embed_batch(self, texts):
        """A list of texts -> (n, dimension) float32."""
        bs = [_cstr(t, "text %d" % i) for i, t in enumerate(texts)]
        n = len(bs)
        out = np.empty((n, self.dimension), dtype=np.float32)
        arr = (ctypes.c_char_p * max(n, 1))(*bs)
        h = self._enter()
        try:
            if n:
                _check(_lib().cge_provider_embed_batch(h, arr, n, out.ctypes.data), "cge: embed")
        finally:
            self._leave()
        return out

    def _embed_texts(self, texts, role):
        return self.embed_batch(texts)
