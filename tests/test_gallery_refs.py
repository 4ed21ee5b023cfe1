"""Person references and unique names in a real gallery file: an ambiguous reference is refused
(naming the candidates) instead of acting on whoever sorts first; names are unique ignoring case."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from coreface_edge.errors import CorefaceError
from coreface_edge.gate.gallery import Gallery


def _unit(rng: np.random.Generator, k: int, d: int = 16) -> np.ndarray:
    v = rng.normal(size=(k, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def ambiguous(tmp_path: Path) -> Path:
    """ids 1, 2, 3: 'Ada' (badge 1042), 'Person 460' (no badge), 'Zed' whose badge '2' is Person 460's id."""
    rng = np.random.default_rng(0)
    path = tmp_path / "amb.db"
    with Gallery(path, create=True) as g:
        assert g.add_person("Ada", _unit(rng, 2), "m", badge="1042") == 1
        assert g.add_person("Person 460", _unit(rng, 1), "m") == 2
        assert g.add_person("Zed", _unit(rng, 1), "m", badge="2") == 3
    return path


def names(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM persons ORDER BY id")]
    finally:
        conn.close()


def test_a_reference_matching_two_people_is_refused_naming_both(ambiguous: Path):
    with Gallery(ambiguous) as g:
        with pytest.raises(CorefaceError) as err:
            g.remove("2")
        message = str(err.value)
        assert "'2' matches 2 people: id 2 'Person 460' (badge -); id 3 'Zed' (badge 2)" in message
        assert "id:N, badge:B or name:NAME" in message and "\n" not in message
        assert names(ambiguous) == ["Ada", "Person 460", "Zed"]  # nothing removed
        assert g.find("1042").name == "Ada" and g.find("Zed").id == 3 and g.find("person 460").id == 2
        assert g.find("badge:2").name == "Zed" and g.find("id:2").name == "Person 460" and g.find("name:ZED").id == 3
        with pytest.raises(CorefaceError, match=r"no enrolled person 'badge:1' \(by badge\)"):
            g.find("badge:1")
        with pytest.raises(CorefaceError, match="no enrolled person 'Bob' .by id, name or badge."):
            g.find("Bob")
        assert g.remove("badge:2").name == "Zed"
        assert g.find("2").name == "Person 460"  # no longer ambiguous
    assert names(ambiguous) == ["Ada", "Person 460"]


def test_gallery_remove_cli_refuses_an_ambiguous_reference(ambiguous: Path):
    proc = run_cli("gallery", "remove", ambiguous, "2", check=False)
    assert proc.returncode == 2
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "matches 2 people" in lines[0], lines
    assert "'Person 460'" in lines[0] and "'Zed'" in lines[0]
    assert names(ambiguous) == ["Ada", "Person 460", "Zed"]
    run_cli("gallery", "remove", ambiguous, "id:2")
    assert names(ambiguous) == ["Ada", "Zed"]


def test_names_are_unique_ignoring_case_and_spacing(tmp_path: Path):
    rng = np.random.default_rng(1)
    path = tmp_path / "g.db"
    with Gallery(path, create=True) as g:
        g.add_person("Person 450", _unit(rng, 1), "m", badge="450")
        for twin in ("person 450", "PERSON  450", " person 450 "):
            with pytest.raises(CorefaceError, match="is already enrolled as 'Person 450' .names are unique ignoring case"):
                g.add_person(twin, _unit(rng, 1), "m")
        with pytest.raises(CorefaceError, match="'Person 450' is already enrolled: choose another --name"):
            g.add_person("Person 450", _unit(rng, 1), "m")
        with pytest.raises(CorefaceError, match="badge '450' already belongs to 'Person 450'"):
            g.add_person("Someone Else", _unit(rng, 1), "m", badge="450")
        assert [p.name for p in g.persons()] == ["Person 450"]


def test_a_duplicate_is_refused_before_any_photo_is_processed(tmp_path: Path):
    """check_new_person is what enrollment calls before it embeds anything: no embeddings needed."""
    rng = np.random.default_rng(2)
    path = tmp_path / "g.db"
    with Gallery(path, create=True) as g:
        g.add_person("Ada", _unit(rng, 1), "m", badge="1042")
        g.check_new_person("Alan", "1043")  # fine
        with pytest.raises(CorefaceError, match="'ada' is already enrolled as 'Ada'"):
            g.check_new_person("ada", None)
        with pytest.raises(CorefaceError, match="badge '1042' already belongs to 'Ada'"):
            g.check_new_person("Alan", "1042")
        # add_person checks before it touches the embeddings: an empty set still says "duplicate"
        with pytest.raises(CorefaceError, match="badge '1042' already belongs"):
            g.add_person("Alan", np.zeros((0, 16), np.float32), "m", badge="1042")


def test_import_refuses_case_twins_and_held_badges(tmp_path: Path):
    rng = np.random.default_rng(3)
    with Gallery(tmp_path / "src.db", create=True) as src:
        src.add_person("ada", _unit(rng, 1), "m", badge="7")
    with Gallery(tmp_path / "dst.db", create=True) as dst:
        dst.add_person("Ada", _unit(rng, 1), "m")
        with pytest.raises(CorefaceError, match="already enrolled here: ada"):
            dst.import_from(tmp_path / "src.db")
    with Gallery(tmp_path / "dst2.db", create=True) as dst:
        dst.add_person("Bob", _unit(rng, 1), "m", badge="7")
        with pytest.raises(CorefaceError, match=r"badges already held here: 7 \(ada\)"):
            dst.import_from(tmp_path / "src.db")
        assert [p.name for p in dst.persons()] == ["Bob"]
    # an old gallery (from before the case rule) holding two case twins cannot be imported as is
    conn = sqlite3.connect(tmp_path / "src.db")
    conn.execute("INSERT INTO persons (name, badge, created, updated) VALUES ('ADA', NULL, 0, 0)")
    conn.execute("INSERT INTO embeddings (person_id, model, vector, created) VALUES (2, 'm', ?, 0)", (_unit(rng, 1)[0].tobytes(),))
    conn.commit()
    conn.close()
    with Gallery(tmp_path / "dst3.db", create=True) as dst:
        with pytest.raises(CorefaceError, match="names differ only in case or spacing: 'ADA', 'ada'|'ada', 'ADA'"):
            dst.import_from(tmp_path / "src.db")
        assert dst.persons() == []
