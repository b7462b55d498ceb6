"""`rag-store serve` as a real uvicorn process on 127.0.0.1: every endpoint, bad input, the
API key, principals, OpenAPI, metrics, and publishes picked up under a request stream.

The store is built with the test-only hash embedder: these tests are about HTTP, limits and
snapshot swaps, not vector quality, and without torch a server starts in about a second.
Vector results are still checked, against `rag-store search` on the same snapshot. The real
model is served in test_search_page.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import FIXTURES, HASH_EMBEDDER, DbtProject, document, write_feed
from langchain_tests.integration_tests import RetrieversIntegrationTests
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import ServerProcess, publish_by_hand, snapshot_of

from rag_store import alerts
from rag_store.client import RagStoreClient, RagStoreError
from rag_store.langchain_retriever import RagStoreRetriever
from rag_store.search import Filters

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_server")]

API_KEY = "test-key-7f3a9c"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> DbtProject:
    project = DbtProject(tmp_path_factory.mktemp("server-store"))
    project.vars = dict(HASH_EMBEDDER)
    project.deliver(FIXTURES / "small_feed" / "batch_1.jsonl")
    # One document only group:hr may read, with words no public document has.
    write_feed(
        project,
        "restricted.jsonl",
        [
            document(
                "hr/salary-bands",
                "# Salary bands\n\nZebracorn grades and quokka bonuses for each salary band.",
                allowed_principals=["group:hr"],
                metadata={"team": "hr", "tags": ["pay"]},
                updated_at="2026-03-01T09:00:00Z",
                _loaded_at="2026-03-01T10:00:00Z",
            )
        ],
    )
    project.build()
    return project


def start(
    store: DbtProject,
    *args: str,
    api_key: str | None = None,
    index: str | None = None,
    http: str | None = None,
) -> ServerProcess:
    env = {
        "RAG_STORE_API_KEY": api_key,
        "RAG_STORE_ALERT_HISTORY": str(store.root / "alert_history.jsonl"),
        "RAG_STORE_SERVE_INDEX": index,
        "RAG_STORE_SERVE_HTTP": http,
    }
    return ServerProcess(store, "--db", str(snapshot_of(store)), *args, env=env)


@pytest.fixture(scope="module")
def server(store):
    process = start(store, "--max-k", "20", "--poll-seconds", "0.2")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keyed(store):
    process = start(store, api_key=API_KEY)
    yield process
    process.stop()


def query(**params) -> str:
    return urllib.parse.urlencode(params)


def cli_hits(store: DbtProject, question: str, mode: str, k: int, *args: str) -> list[dict]:
    """`rag-store search` as a caller without principals (as the server's anonymous one)."""
    completed = store.rag_store(
        "search",
        question,
        "--mode",
        mode,
        "--k",
        str(k),
        "--json",
        "--principals",
        "",
        *args,
        db=snapshot_of(store),
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)["hits"]


# ------------------------------------------------------------------ endpoints


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_search_answers_what_the_cli_answers(store, server, mode):
    question = "smoke alarm battery"
    response = server.get(f"/search?{query(q=question, k=3, mode=mode)}")
    assert response.status == 200
    body = response.json()
    assert body["query"]["mode"] == mode and body["query"]["k"] == 3
    assert body["results"] == cli_hits(store, question, mode, 3)
    if mode != "vector":  # the hash embedder's vectors carry no meaning
        assert body["results"][0]["doc_id"] == "home/smoke-alarms"


def test_every_filter_is_applied(store, server):
    assert {f"{name}" for name in Filters().params()} <= set(server.get("/info").json()["filters"])
    cases = [
        ({"doc_id_like": "kitchen/%"}, ["--doc-id", "kitchen/%"]),
        ({"title_like": "%night trains%"}, ["--title", "%night trains%"]),
        ({"source_uri_like": "%bikes%"}, ["--source-uri", "%bikes%"]),
        ({"updated_after": "2026-03-04T00:00:00Z"}, ["--updated-after", "2026-03-04T00:00:00"]),
        ({"updated_before": "2026-03-02"}, ["--updated-before", "2026-03-02"]),
    ]
    for params, cli_args in cases:
        body = server.get(f"/search?{query(q='water', k=10, **params)}").json()
        assert body["results"], params
        assert body["results"] == cli_hits(store, "water", "vector", 10, *cli_args), params
    # The same search as a JSON body.
    posted = server.post("/search", {"q": "water", "k": 10, "doc_id_like": "kitchen/%"}).json()
    assert {hit["doc_id"] for hit in posted["results"]} == {"kitchen/sourdough"}


def test_the_in_memory_index_answers_what_the_sql_path_answers(store, server):
    """The default server ranks vectors from memory on uvicorn's C parser and loop;
    RAG_STORE_SERVE_INDEX=sql sends every search through the macros, here on the pure-Python
    HTTP stack. Both answer the same, in every mode and under filters."""
    info = server.get("/info").json()
    assert info["vector_index"].startswith("memory: 11 vectors")
    assert info["keyword_index"].startswith("memory: ")
    assert info["http"] == "httptools, uvloop"  # installed by the project's setup
    sql = start(store, "--max-k", "20", index="sql", http="h11")
    try:
        info = sql.get("/info").json()
        assert info["vector_index"].startswith("sql:") and info["http"] == "h11, asyncio"
        answered = 0
        for mode in ("vector", "keyword", "hybrid"):
            for params in ({}, {"doc_id_like": "kitchen/%"}, {"title_like": "%e%"}):
                for question in ("water", "smoke alarm battery", "how do I oil a chain?"):
                    path = f"/search?{query(q=question, k=20, mode=mode, **params)}"
                    expected = sql.get(path).json()["results"]
                    got = server.get(path).json()["results"]
                    # BM25 sums a chunk's terms in another order: the last bits may differ
                    assert [{**hit, "score": pytest.approx(hit["score"])} for hit in got] == (
                        expected
                    ), path
                    answered += bool(expected)
        assert answered >= 24  # all 9 vector and 9 hybrid searches, most keyword ones
    finally:
        sql.stop()


def test_similar_and_document(server):
    body = server.get(f"/similar?{query(chunk_id='kitchen/sourdough:0', k=4)}").json()
    ids = [hit["chunk_id"] for hit in body["results"]]
    assert len(ids) == 4 and "kitchen/sourdough:0" not in ids
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    only_bikes = server.get(
        f"/similar?{query(chunk_id='kitchen/sourdough:0', doc_id_like='bikes/%')}"
    )
    assert {hit["doc_id"] for hit in only_bikes.json()["results"]} == {"bikes/chain-care"}

    doc = server.get(f"/document?{query(doc_id='kitchen/sourdough')}").json()
    assert doc["title"] == "Keeping a sourdough starter alive"
    assert doc["source_uri"] == "https://notes.example/kitchen/sourdough"
    assert [chunk["chunk_index"] for chunk in doc["chunks"]] == list(range(len(doc["chunks"])))
    assert doc["chunks"][0]["chunk_id"] == "kitchen/sourdough:0"

    for path in ("/similar?chunk_id=no/such:0", "/document?doc_id=no/such"):
        missing = server.get(path)
        assert missing.status == 404 and "no/such" in missing.json()["error"]


def test_info_and_openapi(store, server):
    info = server.get("/info").json()
    (model_id,) = store.query("select distinct model_id from retrieval_store")[0]
    assert info["model_id"] == model_id
    assert info["model_reference"] == HASH_EMBEDDER["embedding_model"]
    assert (info["chunks"], info["documents"]) == (10, 5)
    assert info["access_control"] is True  # hr/salary-bands is restricted
    assert info["limits"]["max_k"] == 20

    schema = server.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert {"/search", "/similar", "/document", "/info", "/health", "/metrics"} <= set(
        schema["paths"]
    )
    search_params = {p["name"] for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert {"q", "k", "mode", "X-Rag-Principals", *Filters().params()} <= search_params


def test_health_reports_pipeline_health_and_the_alerts_verdict(store, server):
    body = server.get("/health").json()
    assert body["status"] == "unknown" and body["alerts"] is None  # alerts never ran
    assert body["store"]["readable"] is True and body["store"]["age_seconds"] >= 0
    assert body["pipeline_health"]["coverage"] == 1.0
    assert body["pipeline_health"]["live_documents"] == 6  # operational: the restricted one too
    assert len(body["history"]) == 1 and body["history"][0]["coverage"] == 1.0
    assert body["freshness"]["newest_loaded_at"].startswith("2026-03-")

    # What `rag-store alerts` appends to its history is the verdict /health reports.
    report = alerts.AlertReport(checked_at="2026-12-01T00:00:00+00:00")
    report.checks += [
        alerts.Check("coverage", alerts.OK),
        alerts.Check("p95_lag_seconds", alerts.WARN, observed=90000.0, threshold=">86400"),
    ]
    alerts.append_history(store.root / "alert_history.jsonl", report)
    body = server.get("/health").json()
    assert body["status"] == report.status == "warn"
    assert body["alerts"]["checked_at"] == report.checked_at
    assert body["alerts"]["problems"] == [alerts.describe(report.checks[1])]


def test_metrics_are_parseable_and_count_requests(server):
    server.get(f"/search?{query(q='tomato light', k=2)}")
    server.get("/search?k=0")
    families = {
        family.name: family
        for family in text_string_to_metric_families(server.get("/metrics").body.decode())
    }
    requests = {
        (s.labels["endpoint"], s.labels["status"]): s.value
        for s in families["rag_store_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("/search", "200")] >= 1 and requests[("/search", "400")] >= 1
    latency = families["rag_store_http_request_duration_seconds"]
    assert any(
        s.name.endswith("_count") and s.labels["endpoint"] == "/search" for s in latency.samples
    )
    (age,) = families["rag_store_snapshot_age_seconds"].samples
    assert age.value >= 0
    assert families["rag_store_embed_batch_size"].samples


def test_the_page_and_its_assets_are_served(server):
    page = server.get("/")
    assert page.status == 200 and b'id="search-form"' in page.body
    for asset in ("/static/app.js", "/static/style.css"):
        assert server.get(asset).status == 200
    # No script, style or font from anywhere else.
    assert not re.search(rb'(src|href)="(https?:)?//', page.body)


# ------------------------------------------------------------------ bad input


LONG = "word " * 300  # under the character limit, over the model's 254-token window
BAD_GETS = [
    ("/search?k=3", 400, "'q' is required"),
    ("/search?q=", 400, "q is empty"),
    ("/search?q=%20%20", 400, "q is empty"),
    ("/search?q=x&k=0", 400, "between 1 and 20"),
    ("/search?q=x&k=21", 400, "between 1 and 20"),
    ("/search?q=x&k=ten", 400, "integer"),
    ("/search?q=x&mode=semantic", 400, "vector, keyword, hybrid"),
    ("/search?q=x&doc_id=a", 400, "unknown parameter 'doc_id'"),
    ("/search?q=x&q=y", 400, "more than once"),
    ("/search?q=x&updated_after=yesterday", 400, "ISO 8601"),
    (f"/search?{query(q='x' * 2001)}", 400, "limit is 2000"),
    (f"/search?{query(q=LONG)}", 400, "tokens"),
    (f"/search?{query(q='x', doc_id_like='%' * 600)}", 400, "limit is 512"),
    ("/similar?k=2", 400, "'chunk_id' is required"),
    ("/document", 400, "'doc_id' is required"),
    ("/nowhere", 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "status", "message"), BAD_GETS)
def test_bad_requests_get_a_json_error(server, path, status, message):
    response = server.get(path)
    assert response.status == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert message in body["error"] and body["status"] == status
    assert b"Traceback" not in response.body


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"q": 5}', 400, "q must be a string"),
        (b'{"q": "x", "k": true}', 400, "k must be an integer"),
        (b'{"q": "x", "k": 2.5}', 400, "k must be an integer"),
        (b'{"q": "x", "doc_id_like": ["a"]}', 400, "must be a string"),
        (json.dumps({"q": "x" * 20000}).encode(), 413, "over 16384 bytes"),
    ],
)
def test_bad_bodies_get_a_json_error(server, body, status, message):
    response = server.post("/search", body)
    assert response.status == status
    assert message in response.json()["error"]


def test_wrong_methods_and_hostile_text(store, server):
    assert server.post("/info", {}).status == 405
    hostile = ["'; drop table retrieval_store; --", "\\' or 1=1 --", "naïve 日本語 🚲", "a\x00b"]
    for text in hostile:
        for mode in ("vector", "keyword", "hybrid"):
            response = server.get(f"/search?{query(q=text, k=2, mode=mode)}")
            assert response.status == 200, (text, mode, response.body)
    assert server.get("/info").json()["chunks"] == 10
    assert store.query("select count(*) from retrieval_store") == [(11,)]


# ------------------------------------------------------------------ API key, principals


def test_an_api_key_guards_every_data_endpoint(keyed):
    paths = ["/search?q=water", "/similar?chunk_id=kitchen/sourdough:0", "/info", "/health"]
    for path in [*paths, "/metrics", "/document?doc_id=kitchen/sourdough"]:
        assert keyed.get(path).status == 401, path
        assert keyed.get(path, {"Authorization": "Bearer wrong"}).status == 401, path
        assert keyed.get(path, {"Authorization": f"Bearer {API_KEY}"}).status == 200, path
    assert keyed.get("/info", {"X-API-Key": API_KEY}).status == 200
    assert keyed.get("/").status == 200  # the page shell holds no data
    assert "security" in keyed.get("/openapi.json").json()


def test_principals_are_accepted_only_behind_the_api_key(server, keyed):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    principals = {"X-Rag-Principals": "alice, group:handbook"}
    refused = server.get("/search?q=water", principals)
    assert refused.status == 400 and "API key" in refused.json()["error"]
    # A store without allowed_principals is public: the principals change nothing.
    plain = keyed.get("/search?q=water&k=5", auth).json()["results"]
    assert keyed.get("/search?q=water&k=5", auth | principals).json()["results"] == plain
    too_many = {"X-Rag-Principals": ",".join(f"p{i}" for i in range(65))}
    assert keyed.get("/search?q=water", auth | too_many).status == 400


# search_vector as a store built before access control had it: no principals argument.
UNFILTERED_MACRO = (
    "create or replace macro search_vector(query_vector, query_model_id, k := 10) as table "
    "select * from retrieval_store limit k"
)


def test_a_store_with_access_control_its_macros_cannot_enforce_is_refused(store, tmp_path):
    restricted = tmp_path / "restricted.duckdb"
    restricted.write_bytes(snapshot_of(store).read_bytes())
    publish_by_hand(restricted, UNFILTERED_MACRO)
    refused = store.rag_store("serve", "--port", "0", db=restricted, timeout=60)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "allowed_principals" in line and "refusing to serve it unfiltered" in line


def test_access_control_applies_to_every_endpoint(server, keyed):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    hr = auth | {"X-Rag-Principals": "bob, group:hr"}
    other = auth | {"X-Rag-Principals": "bob"}
    restricted = "hr/salary-bands"

    def doc_ids(process, headers, **params):
        response = process.get(f"/search?{query(**params)}", headers)
        assert response.status == 200, response.body
        return [hit["doc_id"] for hit in response.json()["results"]]

    for mode in ("vector", "keyword", "hybrid"):
        params = {"q": "zebracorn quokka salary bands", "k": 20, "mode": mode}
        assert restricted not in doc_ids(server, {}, **params)  # no header: public only
        assert restricted not in doc_ids(keyed, auth, **params)
        assert restricted not in doc_ids(keyed, other, **params)
        assert restricted in doc_ids(keyed, hr, **params)
    assert doc_ids(keyed, hr, q="zebracorn", mode="keyword")[0] == restricted
    assert doc_ids(server, {}, q="zebracorn", mode="keyword") == []
    chunk = f"{restricted}:0"
    for process, headers, status in ((server, {}, 404), (keyed, other, 404), (keyed, hr, 200)):
        assert process.get(f"/document?doc_id={restricted}", headers).status == status
        assert process.get(f"/similar?chunk_id={chunk}&k=3", headers).status == status
    # neighbours of a public chunk never include the restricted one for an outsider
    similar = server.get("/similar?chunk_id=kitchen/sourdough:0&k=20").json()["results"]
    assert restricted not in {hit["doc_id"] for hit in similar}
    # counts are of what the caller may read
    public, allowed = keyed.get("/info", auth).json(), keyed.get("/info", hr).json()
    assert allowed["documents"] == public["documents"] + 1
    assert allowed["chunks"] > public["chunks"]
    # the metadata filter, and the metadata on every hit
    only_hr = doc_ids(
        keyed, hr, q="salary", k=20, mode="keyword", metadata_contains='{"team":"hr"}'
    )
    assert only_hr == [restricted]
    hit = keyed.get(f"/search?{query(q='zebracorn', mode='keyword')}", hr).json()["results"][0]
    assert hit["metadata"] == {"team": "hr", "tags": ["pay"]}
    bad = keyed.get(f"/search?{query(q='salary', metadata_contains='[1]')}", hr)
    assert bad.status == 400 and "metadata filter" in bad.json()["error"]


def test_a_model_other_than_the_stores_is_refused_at_start(store):
    refused = store.rag_store(
        "serve", "--model", "all-MiniLM-L6-v2", "--port", "0", db=snapshot_of(store), timeout=60
    )
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert "not comparable" in line and "hash-all-MiniLM-L6-v2" in line


@pytest.mark.parametrize(
    ("variable", "named"),
    [("RAG_STORE_SERVE_HTTP", "auto, h11"), ("RAG_STORE_SERVE_INDEX", "auto, memory, sql")],
)
def test_an_unknown_server_setting_is_refused_in_one_line(store, variable, named):
    refused = store.rag_store(
        "serve", "--port", "0", db=snapshot_of(store), env_extra={variable: "fast"}, timeout=60
    )
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert variable in line and named in line


# ------------------------------------------------------------------ adapters


def test_python_client(server):
    client = RagStoreClient(server.url)
    hits = client.search("smoke alarm battery", k=2, mode="keyword", doc_id_like="home/%")
    assert [hit.doc_id for hit in hits] == ["home/smoke-alarms"] * len(hits) and hits
    assert client.similar(hits[0].chunk_id, k=1)[0].chunk_id != hits[0].chunk_id
    assert client.document("home/smoke-alarms")["title"] == "Testing smoke alarms"
    assert client.info()["chunks"] == 10
    with pytest.raises(RagStoreError) as error:
        client.search("x", k=0)
    assert error.value.status == 400 and "between 1 and 20" in error.value.message


class TestRagStoreRetriever(RetrieversIntegrationTests):
    """langchain-tests' standard retriever suite against the running server."""

    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, server):
        type(self).url = server.url

    @property
    def retriever_constructor(self):
        return RagStoreRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"base_url": self.url, "k": 4, "mode": "hybrid"}

    @property
    def retriever_query_example(self) -> str:
        return "how do I keep a sourdough starter alive?"


# ------------------------------------------------------------------ publishes (keep last)


def metric(server: ServerProcess, name: str) -> float:
    for family in text_string_to_metric_families(server.get("/metrics").body.decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


def test_a_publish_that_cannot_be_served_keeps_the_previous_snapshot(store, server):
    before = metric(server, "rag_store_snapshot_swaps_total")
    publish_by_hand(snapshot_of(store), UNFILTERED_MACRO)
    deadline = time.monotonic() + 20
    while metric(server, "rag_store_snapshot_swap_failures_total") < 1:
        assert time.monotonic() < deadline, "the refused publish was not noticed"
        time.sleep(0.2)
    assert metric(server, "rag_store_snapshot_swaps_total") == before
    health = server.get("/health").json()
    assert "allowed_principals" in health["store"]["last_swap_error"]
    assert server.get("/search?q=water").status == 200


def test_publishes_under_a_request_stream_fail_no_request(store, server):
    swaps_before = metric(server, "rag_store_snapshot_swaps_total")
    stop = threading.Event()
    outcomes: list[tuple[int, bytes]] = []
    modes = ("vector", "keyword", "hybrid")

    def stream(worker: int) -> None:
        for number in range(5000):  # bounded, and stopped once the publishes are in
            if stop.is_set():
                return
            mode = modes[(worker + number) % 3]
            response = server.get(f"/search?{query(q='water the plants', k=3, mode=mode)}")
            outcomes.append((response.status, response.body[:200]))
            time.sleep(0.005)

    def wait_for(marker: str, doc_id: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            found = server.get(f"/search?{query(q=marker, k=1, mode='keyword')}").json()
            if [hit["doc_id"] for hit in found["results"]] == [doc_id]:
                return
            assert time.monotonic() < deadline, f"the publish of {doc_id} was not picked up"
            time.sleep(0.05)

    snapshot = snapshot_of(store)
    # Two streams keep requests in flight across every swap without starving the build.
    with ThreadPoolExecutor(2) as pool:
        workers = [pool.submit(stream, worker) for worker in range(2)]
        try:
            # A real build publishes a new document...
            write_feed(store, "stream.jsonl", [document("stream/quokka", "Quokkas smile.")])
            store.build()
            wait_for("quokka", "stream/quokka")
            # ...then publishes in quick succession, each renamed in as a build does.
            for number, marker in enumerate(("axolotl", "pangolin", "narwhal")):
                publish_by_hand(
                    snapshot,
                    # stamped when written, as retrieval_store stamps every row
                    "insert into retrieval_store select * replace ("
                    f"'stream/{marker}:0' as chunk_id, 'stream/{marker}' as doc_id, "
                    f"'{marker} {number}' as chunk_text, "
                    "now() at time zone 'UTC' as stored_at) "
                    "from retrieval_store where chunk_id = 'stream/quokka:0'",
                )
                wait_for(marker, f"stream/{marker}")
        finally:
            stop.set()
            for worker in workers:
                worker.result()
    failures = [outcome for outcome in outcomes if outcome[0] != 200]
    assert outcomes and not failures, failures[:3]
    assert metric(server, "rag_store_snapshot_swaps_total") >= swaps_before + 4
    assert server.get("/info").json()["chunks"] == 14
    assert server.get("/health").json()["store"]["last_swap_error"] is None


def test_the_index_is_rebuilt_before_a_swap(store, server):
    """A publish adding an exact copy of a chunk's vector (a tie, ranked by chunk_id) is
    served from a rebuilt index: vector results match `rag-store search` on the new file."""
    swaps = metric(server, "rag_store_snapshot_swaps_total")
    publish_by_hand(
        snapshot_of(store),
        "insert into retrieval_store select * replace ("
        "'kitchen/sourdough:0a' as chunk_id, 'copy of a chunk' as chunk_text, "
        "now() at time zone 'UTC' as stored_at) "
        "from retrieval_store where chunk_id = 'kitchen/sourdough:0'",
    )
    deadline = time.monotonic() + 30
    while metric(server, "rag_store_snapshot_swaps_total") < swaps + 1:
        assert time.monotonic() < deadline, "the publish was not picked up"
        time.sleep(0.1)
    info = server.get("/info").json()
    assert info["vector_index"].startswith(f"memory: {info['chunks'] + 1} vectors")  # +hr
    for question in ("water", "keeping a sourdough starter alive"):
        body = server.get(f"/search?{query(q=question, k=20)}").json()
        assert body["results"] == cli_hits(store, question, "vector", 20)
    ids = [hit["chunk_id"] for hit in body["results"]]
    first = ids.index("kitchen/sourdough:0")
    assert ids[first + 1] == "kitchen/sourdough:0a"  # equal scores: chunk_id order
