"""rag-store: a RAG retrieval store kept in sync with documents by a dbt project on DuckDB."""

__version__ = "0.1.0"
