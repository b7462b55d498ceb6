"""`rag-store serve` with the real embedder kept loaded, and its search page in a real
headless Chromium (Debian's chromium and chromium-driver, installed by `make browser`)."""

from __future__ import annotations

import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO, DbtProject
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import ServerProcess, snapshot_of

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_search_page")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts"
QUESTION = "how often should I oil my bicycle chain"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> DbtProject:
    project = DbtProject(tmp_path_factory.mktemp("page-store"))
    project.deliver(FIXTURES / "small_feed" / "batch_1.jsonl")
    project.build()
    project.build()  # a second (no-op) build: two points of health history to plot
    return project


@pytest.fixture(scope="module")
def server(store):
    process = ServerProcess(
        store, "--db", str(snapshot_of(store)), env={"RAG_STORE_API_KEY": None}, wait=120
    )
    yield process
    process.stop()


def test_the_real_embedder_answers_concurrent_questions(server):
    questions = [QUESTION, "which berth on a sleeper train", "how do I test a smoke alarm"]
    expected = ["bikes/chain-care", "travel/night-trains", "home/smoke-alarms"]
    info = server.get("/info").json()
    assert info["embedder"] == "all-MiniLM-L6-v2" and "all-MiniLM-L6-v2@" in info["model_id"]

    def ask(number: int) -> str:
        q = urllib.parse.quote(questions[number % 3])
        response = server.get(f"/search?q={q}&k=1&mode={('vector', 'hybrid')[number % 2]}")
        assert response.status == 200, response.body
        return response.json()["results"][0]["doc_id"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(24)))
    assert answers == [expected[number % 3] for number in range(24)]
    text = server.get("/metrics").body.decode()
    batches = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name == "rag_store_embed_batch_size"
    }
    # Every question went through the one loaded embedder, in as many or fewer passes.
    assert batches["rag_store_embed_batch_size_sum"] == 24
    assert 1 <= batches["rag_store_embed_batch_size_count"] <= 24


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed: run `make browser`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
    ):
        options.add_argument(argument)
    # An explicit driver: selenium then has nothing to look up or download.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_the_search_page_finds_the_document_and_plots_health(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server.url + "/")
    assert browser.title == "rag-store search"
    browser.find_element(By.ID, "q").send_keys(QUESTION)
    Select(browser.find_element(By.ID, "mode")).select_by_value("hybrid")
    browser.find_element(By.ID, "go").click()
    first = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#results li.hit")))
    assert first.get_attribute("data-doc-id") == "bikes/chain-care"
    assert first.find_element(By.CSS_SELECTOR, ".title a").get_attribute("href") == (
        "https://notes.example/bikes/chain-care"
    )
    assert "result(s), hybrid" in browser.find_element(By.ID, "status").text

    # The health panel: the verdict badge and both plots, one point per build.
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#lag-plot circle"))
    for plot in ("lag-plot", "coverage-plot"):
        assert len(browser.find_elements(By.CSS_SELECTOR, f"#{plot} circle")) == 2
        assert browser.find_elements(By.CSS_SELECTOR, f"#{plot} path.series")
    assert browser.find_element(By.ID, "health-status").text == "unknown"  # alerts never ran

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "search-page.png"))
