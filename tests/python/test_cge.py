"""
test_cge.py: the Python binding (python/cge) against the shared fixtures.

- struct layouts: every ctypes struct against the C compiler's sizeof/offsetof from cge.h
  (CGE_TEST_LAYOUT, written by tests/unit/test_runtime_python.c; run alone, the test builds
  tests/python/cge_layout.c with cc);
- Engine.embed over tests/fixtures/ensemble (inputs.jsonl -> expected.jsonl): fused and
  expert_weights max abs <= 1e-5, selected equal, slot vectors rel <= 1e-5 (None where the
  reference is null), media as paths and as bytes;
- Model.embed/encode over every e2e case (tests/fixtures/e2e), token ids as case.json;
- sentence-transformers and LangChain shapes, the Provider, errors as exceptions, threads (same
  results, the GIL released during a call), close and interpreter exit with a live engine.

Run: PYTHONPATH=python /usr/bin/python3 tests/python/test_cge.py (CGE_LIBRARY picks the
library). Prints "python: N passed, N failed, N skipped" last.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

import cge

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENS = os.path.join(ROOT, "tests", "fixtures", "ensemble")
ENS_DIR = os.path.join(ENS, "ensemble")
E2E = os.path.join(ROOT, "tests", "fixtures", "e2e")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def fixture_inputs(media_as_bytes=False):
    """inputs.jsonl as binding inputs, media named relative to it (paths or bytes)."""
    out = []
    for d in read_jsonl(os.path.join(ENS, "inputs.jsonl")):
        d = dict(d)
        for k in ("image", "audio"):
            if k in d:
                p = os.path.join(ENS, d[k])
                if media_as_bytes:
                    with open(p, "rb") as f:
                        d[k] = f.read()
                else:
                    d[k] = p
        out.append(d)
    return out


def subprocess_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    env["CGE_LIBRARY"] = cge.library_path()
    env.update(extra)
    return env


# ==== Layout ====================================================================================
def c_layout():
    path = os.environ.get("CGE_TEST_LAYOUT")
    if path:
        with open(path) as f:
            return json.load(f)
    src = os.path.join(ROOT, "tests", "python", "cge_layout.c")
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "layout")
        subprocess.run(["cc", "-std=c11", "-DCGE_LAYOUT_MAIN", "-I", os.path.join(ROOT, "include"),
                        src, "-o", exe], check=True)
        return json.loads(subprocess.run([exe], check=True, capture_output=True).stdout)


class TestLayout(unittest.TestCase):
    def test_structs_match_the_c_compiler(self):
        import ctypes
        from cge import _capi
        lay = c_layout()
        self.assertEqual(lay.pop("enum")["size"], ctypes.sizeof(ctypes.c_int))
        self.assertEqual(sorted(lay), sorted(_capi.STRUCTS))
        for name, cls in _capi.STRUCTS.items():
            c = lay[name]
            py_fields = {f: getattr(cls, f).offset for f, _ in cls._fields_}
            self.assertEqual(py_fields, c["fields"], name)
            self.assertEqual(ctypes.sizeof(cls), c["size"], name)

    def test_version_matches_the_header(self):
        with open(os.path.join(ROOT, "include", "cge.h")) as f:
            h = f.read()
        self.assertIn('#define CGE_VERSION_STRING "%s"' % cge.__version__, h)

    def test_every_bound_function_is_in_the_header_and_the_library(self):
        import re
        from cge import _capi
        with open(os.path.join(ROOT, "include", "cge.h")) as f:
            h = f.read()
        dll = _capi.lib().dll
        for name in _capi._PROTOS:
            self.assertTrue(re.search(r"\b%s\(" % name, h), "%s is not declared in cge.h" % name)
            self.assertTrue(hasattr(dll, name), "%s is not exported by libcge.so" % name)

    def test_every_status_has_a_class(self):
        for st in range(1, 19):
            cls = cge.errors.BY_STATUS[st]
            self.assertTrue(issubclass(cls, cge.Error))
            self.assertEqual(cls.status, st)
            self.assertTrue(cge.status_str(st))
        self.assertTrue(issubclass(cge.InvalidValueError, ValueError))
        self.assertTrue(issubclass(cge.ModelNotFoundError, FileNotFoundError))


class TestLibraryLookup(unittest.TestCase):
    def test_missing_library_is_a_clear_error(self):
        code = ("import cge\n"
                "try:\n    cge.Model('x')\n"
                "except cge.LibraryNotFoundError as e:\n    print('ERR', e)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=subprocess_env(CGE_LIBRARY="/nonexistent/libcge.so"), timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ERR", r.stdout)
        self.assertIn("/nonexistent/libcge.so", r.stdout)
        self.assertIn("CGE_LIBRARY", r.stdout)

    def test_found_library_is_the_requested_one(self):
        want = os.environ.get("CGE_LIBRARY")
        if want:
            self.assertEqual(os.path.realpath(cge.library_path()), os.path.realpath(want))


# ==== One model folder ==========================================================================
class TestModel(unittest.TestCase):
    def case(self, name):
        d = os.path.join(E2E, name)
        inputs = read_jsonl(os.path.join(d, "inputs.jsonl"))
        for x in inputs:
            for k in ("image", "audio"):
                if k in x:
                    x[k] = os.path.join(d, x[k])
        exp = np.fromfile(os.path.join(d, "expected.f32"), dtype="<f4").reshape(len(inputs), -1)
        with open(os.path.join(d, "case.json")) as f:
            case = json.load(f)
        return d, inputs, exp, case

    def test_e2e_cases(self):
        # One case per kind of input the binding marshals (text, text + instruction, image,
        # audio); the C tests cover every family. Media also go in as bytes.
        cases = ["bert_mean_l2", "mistral_last_token", "clip_image", "whisper_audio"]
        for name in cases:
            with self.subTest(case=name):
                d, inputs, exp, case = self.case(name)
                with cge.Model(os.path.join(d, "model")) as m:
                    self.assertEqual(m.dimension, exp.shape[1])
                    out = m.embed(inputs)
                    self.assertEqual(out.dtype, np.float32)
                    self.assertEqual(out.shape, exp.shape)
                    worst = max(rel(out[i], exp[i]) for i in range(len(inputs)))
                    self.assertLessEqual(worst, 1e-5, name)
                    # media as bytes give the same rows
                    media = [i for i, x in enumerate(inputs) if "image" in x or "audio" in x]
                    if media:
                        as_bytes = []
                        for i in media:
                            k = "image" if "image" in inputs[i] else "audio"
                            with open(inputs[i][k], "rb") as f:
                                as_bytes.append({k: f.read()})
                        ob = m.embed(as_bytes)
                        for j, i in enumerate(media):
                            self.assertLessEqual(rel(ob[j], exp[i]), 1e-5, name)
                    # token ids as case.json
                    ids = case.get("token_ids") or []
                    for i, x in enumerate(inputs):
                        if "text" in x and "instruction" not in x and i < len(ids) and ids[i]:
                            self.assertEqual(m.tokenize(x["text"]), ids[i], (name, i))

    def test_encode_shapes(self):
        d, inputs, exp, _ = self.case("bert_mean_l2")
        texts = [x["text"] for x in inputs]
        with cge.Model(os.path.join(d, "model")) as m:
            e = m.encode(texts, batch_size=3)
            self.assertEqual(e.shape, exp.shape)
            self.assertEqual(e.dtype, np.float32)
            self.assertLessEqual(float(np.max(np.abs(np.linalg.norm(e, axis=1) - 1))), 1e-5)
            self.assertLessEqual(rel(e, exp), 1e-5)
            one = m.encode(texts[1])
            self.assertEqual(one.shape, (exp.shape[1],))
            self.assertLessEqual(rel(one, exp[1]), 1e-5)
            lst = m.encode(texts[:2], convert_to_numpy=False)
            self.assertIsInstance(lst, list)
            self.assertEqual(len(lst), 2)
            self.assertEqual(m.encode([]).shape, (0, exp.shape[1]))
            # prompt is prepended, as in sentence-transformers
            p = m.encode(["world"], prompt="Hello ")
            self.assertLessEqual(rel(p[0], exp[0]), 1e-5)
            docs = m.embed_documents(texts[:3])
            self.assertIsInstance(docs, list)
            self.assertIsInstance(docs[0], list)
            self.assertIsInstance(docs[0][0], float)
            self.assertEqual((len(docs), len(docs[0])), (3, exp.shape[1]))
            q = m.embed_query(texts[0])
            self.assertIsInstance(q, list)
            self.assertIsInstance(q[0], float)
            self.assertLessEqual(rel(q, exp[0]), 1e-5)
            # pre-tokenized ids
            ids = m.tokenize(texts[1])
            self.assertLessEqual(rel(m.embed({"ids": ids}), exp[1]), 1e-5)

    def test_errors(self):
        d, inputs, _, _ = self.case("bert_mean_l2")
        with self.assertRaises(cge.ModelNotFoundError) as cm:
            cge.Model(os.path.join(ROOT, "tests", "fixtures", "no_such_model"))
        self.assertIn("no_such_model", str(cm.exception))
        self.assertIsInstance(cm.exception, cge.Error)
        with self.assertRaises(ValueError):
            cge.Model(os.path.join(d, "model"), dtype="f7")
        m = cge.Model(os.path.join(d, "model"))
        with self.assertRaises(cge.UnsupportedModalityError) as cm:
            m.embed(["fine", {"image": os.path.join(ENS, "camera.png")}])
        self.assertEqual(cm.exception.index, 1)
        self.assertIn("input 1", str(cm.exception))
        out, errs = m.embed(["fine", {"image": b"\x89PNG"}, "also fine"], return_errors=True)
        self.assertIsNone(errs[0])
        self.assertIsInstance(errs[1], cge.Error)
        self.assertIsNone(errs[2])
        self.assertTrue(np.all(out[1] == 0))
        self.assertLessEqual(rel(out[2], m.embed("also fine")), 1e-6)
        for bad, exc in ((b"bytes", TypeError), (5, TypeError), ({"txt": "x"}, ValueError),
                         ({"text": "a", "image": "b"}, ValueError), ({"text": 5}, TypeError),
                         ({"text": "a", "role": "boss"}, ValueError),
                         ({"text": "a", "instruction": "a\0b"}, ValueError)):
            with self.assertRaises(exc):
                m.embed(bad if isinstance(bad, (bytes, int)) else [bad])
        m.close()
        m.close()
        with self.assertRaises(cge.ClosedError):
            m.embed("x")


# ==== The engine ================================================================================
class TestEngine(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.engine = cge.Engine(ENS_DIR, cache=False)
        cls.expected = read_jsonl(os.path.join(ENS, "expected.jsonl"))
        with open(os.path.join(ENS, "case.json")) as f:
            cls.case = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.engine.close()

    def check_result(self, i, r, fused=True):
        exp = self.expected[i]
        self.assertIsNone(r.error)
        if fused:
            self.assertEqual(r.embedding.dtype, np.float32)
            self.assertEqual(r.embedding.shape, (1536,))
            self.assertLessEqual(float(np.max(np.abs(r.embedding - exp["embedding"]))), 1e-5, i)
            self.assertLessEqual(float(np.max(np.abs(r.expert_weights - exp["expert_weights"]))),
                                 1e-5, i)
            self.assertEqual(r.selected, exp["selected"], i)
        else:
            self.assertIsNone(r.embedding)
        for name in cge.SLOT_NAMES:
            ref = exp["slots"][name]
            if ref is None:
                self.assertIsNone(r.slots[name], (i, name))
                self.assertNotIn(name, r.present)
            else:
                self.assertIsNotNone(r.slots[name], (i, name))
                self.assertEqual(r.slot_results[name].state, "ok")
                self.assertLessEqual(rel(r.slots[name], ref), 1e-5, (i, name))

    def test_fixture_both_media_as_paths(self):
        inputs = fixture_inputs()
        res = self.engine.embed(inputs, output="both")
        self.assertEqual(len(res), len(self.expected))
        for i, r in enumerate(res):
            self.check_result(i, r)

    def test_fixture_media_as_bytes(self):
        inputs = fixture_inputs(media_as_bytes=True)
        media = [i for i, x in enumerate(inputs) if "image" in x or "audio" in x]
        self.assertEqual(len(media), 4)
        for i in media:
            self.assertIsInstance(inputs[i].get("image", inputs[i].get("audio")), bytes)
        res = self.engine.embed([inputs[i] for i in media], output="both")
        for j, i in enumerate(media):
            self.check_result(i, res[j])

    def test_fixture_fused_and_slots(self):
        inputs = fixture_inputs()
        pick = [0, 2, 3, 4, 8, 10]  # document, query, instruction, code, image, audio
        fused = self.engine.embed([inputs[i] for i in pick])
        self.assertEqual(fused.shape, (len(pick), 1536))
        self.assertEqual(fused.dtype, np.float32)
        exp = np.array([self.expected[i]["embedding"] for i in pick])
        self.assertLessEqual(float(np.max(np.abs(fused - exp))), 1e-5)
        exp = np.array([e["embedding"] for e in self.expected])
        one = self.engine.embed(inputs[3])  # a single input gives a single row
        self.assertEqual(one.shape, (1536,))
        self.assertLessEqual(float(np.max(np.abs(one - exp[3]))), 1e-5)
        slots = self.engine.embed(inputs[:3], output="slots")
        for i, r in enumerate(slots):
            self.check_result(i, r, fused=False)
        r = self.engine.embed(inputs[0], output="slots", slots=["E1", 5])
        self.assertEqual(sorted(r.present), ["E1", "E6"])
        self.assertLessEqual(rel(r.slots["E1"], self.expected[0]["slots"]["E1"]), 1e-5)
        self.assertIsNone(r.slots["E2"])

    def test_slots_table(self):
        slots = self.engine.slots
        self.assertEqual([s["slot"] for s in slots], list(cge.SLOT_NAMES))
        for s in slots:
            self.assertEqual(s["dim"], self.case["slot_dims"][s["slot"]])
            self.assertTrue(s["present"])
        self.assertEqual(slots[4]["modalities"], ["audio"])
        self.assertIn("image", slots[3]["modalities"])
        self.assertEqual(self.engine.dimension, 1536)
        self.assertEqual(self.engine.name, self.case["name"])
        self.assertFalse(self.engine.is_demo)
        self.assertTrue(self.engine.health())
        ids = self.engine.tokenize("what is the capital of France?", "E1")
        self.assertEqual(ids, self.case["token_ids"]["E1"][2])

    def test_roles_and_langchain_shapes(self):
        docs = self.engine.embed_documents(["what is the capital of France?", "Hello world"])
        self.assertEqual((len(docs), len(docs[0])), (2, 1536))
        self.assertIsInstance(docs[0][0], float)
        q = self.engine.embed_query("what is the capital of France?")
        self.assertEqual(len(q), 1536)
        # input #2 of the fixture is this text as a query
        self.assertLessEqual(float(np.max(np.abs(np.array(q) - self.expected[2]["embedding"]))),
                             1e-5)
        self.assertGreater(float(np.max(np.abs(np.array(q) - np.array(docs[0])))), 1e-4)
        hw = self.engine.encode(["Hello world"])  # input #7: a document
        self.assertLessEqual(float(np.max(np.abs(hw[0] - self.expected[7]["embedding"]))), 1e-5)

    def test_errors(self):
        with self.assertRaises(cge.Error) as cm:
            cge.Engine(os.path.join(ROOT, "tests", "fixtures", "no_such_ensemble"))
        self.assertIn("no_such_ensemble", str(cm.exception))
        e = self.engine
        missing = os.path.join(ENS, "no_such.png")
        with self.assertRaises(cge.Error) as cm:
            e.embed(["fine", {"image": missing}])
        self.assertEqual(cm.exception.index, 1)
        self.assertIn("input 1", str(cm.exception))
        out, errs = e.embed(["Hello world", {"image": b"not an image"}], return_errors=True)
        self.assertIsNone(errs[0])
        self.assertIsInstance(errs[1], cge.Error)
        self.assertTrue(np.all(np.isnan(out[1])))
        self.assertLessEqual(float(np.max(np.abs(out[0] - self.expected[7]["embedding"]))), 1e-5)
        res = e.embed([{"audio": b"RIFF"}], output="both", return_errors=True)
        self.assertIsInstance(res[0].error, cge.Error)
        self.assertIsNone(res[0].embedding)
        for bad, exc in (({"image": 3.5}, TypeError), ({"code": "x", "text": "y"}, ValueError),
                         ({"text": "x", "role": "librarian"}, ValueError)):
            with self.assertRaises(exc):
                e.embed([bad])
        with self.assertRaises(ValueError):
            e.embed("x", output="fusedd")
        with self.assertRaises(ValueError):
            e.embed("x", slots=["E13"])
        with self.assertRaises(TypeError):
            cge.Engine(ENS_DIR, n_thread=2)
        self.assertEqual(e.embed([]).shape, (0, 1536))

    def test_threads_give_the_same_results(self):
        inputs = fixture_inputs()[:5]
        want = self.engine.embed(inputs)
        got = [None] * 5
        errors = []

        def work(k):
            try:
                got[k] = self.engine.embed(inputs[k:] + inputs[:k])
            except Exception as ex:  # noqa: BLE001 (reported below)
                errors.append(ex)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(5)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])
        for k in range(5):
            rolled = np.roll(got[k], k, axis=0)
            self.assertLessEqual(float(np.max(np.abs(rolled - want))), 1e-6, k)

    def test_gil_is_released_during_a_call(self):
        # While one thread is inside a long library call, the main thread keeps running Python:
        # with the GIL held it would stall for the whole call.
        long_inputs = [fixture_inputs()[5]] * 3
        t0 = time.perf_counter()
        self.engine.embed(long_inputs)
        call_s = time.perf_counter() - t0
        done = threading.Event()

        def work():
            self.engine.embed(long_inputs)
            done.set()

        gaps = []
        t = threading.Thread(target=work)
        last = time.perf_counter()
        t.start()
        while not done.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            time.sleep(0.0005)
        t.join()
        self.assertGreater(len(gaps), 3)
        self.assertLess(max(gaps), max(0.5 * call_s, 0.05),
                        "main thread stalled %.3f s during a %.3f s call" % (max(gaps), call_s))

    def test_stats_and_swap(self):
        e = self.engine  # swapped for the same folder: the other tests see the same model
        s0 = e.stats()
        e.embed(["Hello world", "Hello world"])
        st = e.stats()
        self.assertEqual(st["requests"], s0["requests"] + 1)
        self.assertEqual(st["inputs"], s0["inputs"] + 2)
        self.assertEqual(st["slots"]["E1"]["state"], "ready")
        self.assertEqual(st["slots"]["E1"]["dim"], 22)
        self.assertTrue(st["slots"]["E1"]["path"].endswith("E1"))
        self.assertEqual(st["slots"]["E10"]["state"], "ready")
        v0 = st["slots"]["E1"]["version"]
        v1 = e.swap("E1", os.path.join(ENS_DIR, "E1"))
        self.assertGreater(v1, v0)
        with self.assertRaises(cge.Error) as cm:
            e.swap("E1", os.path.join(ENS_DIR, "no_such_folder"))
        self.assertIn("no_such_folder", str(cm.exception))
        r = e.embed("Hello world", output="both")
        self.check_result(7, r)
        self.assertEqual(r.slot_results["E1"].version, v1)
        self.assertEqual(e.stats()["slots"]["E1"]["version"], v1)

    def test_close_and_context_manager(self):
        # Lazy engines that run E1 only: cheap to open.
        with cge.Engine(ENS_DIR, preload=False) as e:
            self.assertFalse(e.closed)
            e.embed("x", slots=["E1"])
        self.assertTrue(e.closed)
        with self.assertRaises(cge.ClosedError):
            e.embed("x")
        e.close()
        # close waits for a call running on another thread
        e = cge.Engine(ENS_DIR, cache=False, preload=False)
        started = threading.Event()
        out = []

        def work():
            started.set()
            try:
                out.append(e.embed([fixture_inputs()[5]] * 4, slots=["E1"]).shape)
            except cge.ClosedError:  # close() won the race: also correct
                out.append("closed")

        t = threading.Thread(target=work)
        t.start()
        started.wait()
        e.close()
        t.join()
        self.assertIn(out[0], ((4, 1536), "closed"))
        self.assertTrue(e.closed)

    def test_provider(self):
        with cge.Provider(ENS_DIR) as p:
            self.assertEqual(p.dimension, 1536)
            self.assertGreater(p.max_tokens, 0)
            v = p.embed("Hello world")
            self.assertEqual(v.shape, (1536,))
            self.assertLessEqual(float(np.max(np.abs(v - self.expected[7]["embedding"]))), 1e-5)
            b = p.embed_batch(["The quick brown fox jumps over the lazy dog.", "Hello world"])
            self.assertEqual(b.shape, (2, 1536))
            self.assertLessEqual(float(np.max(np.abs(b[0] - self.expected[0]["embedding"]))),
                                 1e-5)
            self.assertEqual(len(p.embed_documents(["a", "b"])), 2)


class TestProcess(unittest.TestCase):
    def run_py(self, code, **env):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=subprocess_env(**env), timeout=120)

    def test_exit_with_a_live_engine_is_clean(self):
        code = ("import cge, threading\n"
                "e = cge.Engine(%r, preload=False)\n"
                "m = cge.Model(%r)\n"
                "e.embed('hello', slots=['E1', 'E2']); m.embed('hello')\n"
                "def loop():\n"
                "    while True:\n"
                "        try: e.embed(['a text to keep the slots busy'] * 4, slots=['E1', 'E2'])\n"
                "        except cge.ClosedError: return\n"
                "threading.Thread(target=loop, daemon=True).start()\n"
                "print('done')\n" % (ENS_DIR, os.path.join(E2E, "bert_mean_l2", "model")))
        r = self.run_py(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "done")
        self.assertEqual(r.stderr.strip(), "")

    def test_demo_ensemble_with_notice(self):
        with tempfile.TemporaryDirectory() as home:
            env = {"HOME": home, "CGE_CONFIG": "", "XDG_CONFIG_HOME": home}
            r = self.run_py("import cge\ne = cge.Engine(preload=False)\n"
                            "print(e.is_demo, e.embed('hi', slots=['E1']).shape)\n"
                            "print(cge.demo_ensemble_path())\n", **env)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split("\n")
        self.assertEqual(lines[0], "True (1536,)")
        self.assertTrue(os.path.isdir(lines[1]), lines[1])
        self.assertIn("demo", r.stderr)


class _TimedResult(unittest.TextTestResult):
    """Prints each test's wall time after its verdict (the suite must stay fast under ASan)."""

    def startTest(self, test):
        self._t0 = time.perf_counter()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.stream.write("    (%.2f s)\n" % (time.perf_counter() - self._t0))


def main():
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_TimedResult)
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    res = runner.run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    skipped = len(res.skipped)
    passed = res.testsRun - failed - skipped - len(res.expectedFailures)
    print("python: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
