"""Resources own the services they build: what a run's steps were given is closed when it ends."""

import threading

import dagster as dg

from studyllm_pipeline.resources import EmbedderResource, SummarizerResource


def _loop_threads(prefix: str = "studyllm-inference-") -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()}


def test_the_summarizer_resource_closes_its_services_at_teardown(engine):
    before = _loop_threads()
    with dg.build_resources({"summarizer": SummarizerResource(spec="extractive")}) as resources:
        service = resources.summarizer.service(engine)
        summary = service.as_summarize_fn()(["- cats sleep all day", "- cats sleep in the sun"])
        assert summary
        assert _loop_threads() - before  # summarising ran on the service's background loop
    assert not _loop_threads() - before  # the resource's teardown stopped it


def test_code_location_resources_read_their_settings_when_a_run_starts(monkeypatch):
    """dg.EnvVar: a variable set after the definitions loaded is what the next run's resource gets,
    and one left unset has the default the code location set (STUDYLLM_EMBED_BASE_URL: the provider's)."""
    from studyllm_pipeline.definitions import build_resources

    configured = build_resources()  # what the code location holds once its definitions are loaded
    monkeypatch.setenv("STUDYLLM_EMBED_MODEL", "model-set-after-loading")
    monkeypatch.setenv("STUDYLLM_SUMMARIZER", "openai:gpt-4o-mini")
    monkeypatch.setenv("STUDYLLM_EMBED_BASE_URL", "")
    with dg.build_resources({"embedder": configured["embedder"], "summarizer": configured["summarizer"]}) as built:
        assert built.embedder.model == "model-set-after-loading"
        assert built.summarizer.spec == "openai:gpt-4o-mini"
        assert not built.embedder.base_url


def test_the_embedder_resource_closes_its_services_at_teardown(engine, resources):
    before = _loop_threads("studyllm-embedding-")
    assert isinstance(resources["embedder"], EmbedderResource)
    with dg.build_resources({"embedder": resources["embedder"]}) as built:
        outcome = built.embedder.service(engine).embed(["one text", "another text"])
        assert outcome.embedded == 2
        assert _loop_threads("studyllm-embedding-") - before  # embedding ran on the service's background loop
    assert not _loop_threads("studyllm-embedding-") - before  # the resource's teardown stopped it
