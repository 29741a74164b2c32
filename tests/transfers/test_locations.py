"""Transfer locations: how settings.toml names them, and where a job's path resolves to."""

from __future__ import annotations

import pytest

from balsamd.transfers.locations import Location, LocationError, Place, parse_location, resolve, split_item

ENDPOINT = "0a1b2c3d-0000-1111-2222-333344445555"
FAR = Location(scheme="file", base="/data/far")


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("file:///data/far", FAR),
        ("file:///data//far/", FAR),
        (
            "rsync://me@Host.example/base/dir",
            Location(scheme="rsync", base="/base/dir", host="host.example", user="me"),
        ),
        ("rsync://me@host:2222/base", Location(scheme="rsync", base="/base", host="host", user="me", port=2222)),
        (f"globus://{ENDPOINT.upper()}/~/runs", Location(scheme="globus", base="/~/runs", endpoint=ENDPOINT)),
    ],
)
def test_a_location_is_parsed_into_its_way_there_and_its_base_directory(url: str, location: Location) -> None:
    assert parse_location(url) == location


@pytest.mark.parametrize(
    ("url", "told"),
    [
        ("http://h/x", "scheme 'http'"),
        ("file://h/x", "three slashes"),
        ("file:data", "not absolute"),
        ("file:///a/../b", "'..'"),
        ("file:///a?x=1", "query"),
        ("rsync://h/x", "not a login name"),
        ("rsync://u:secret@h/x", "never holds a password"),
        ("rsync://u@h:0/x", "port 0"),
        ("rsync://u@h:70000/x", "65535"),
        ("rsync://u@-h/x", "not a host name"),
        ("globus://nope/x", "UUID"),
        ("file:///a\nb", "not a location"),
    ],
)
def test_a_location_that_cannot_be_used_is_refused_saying_what_to_give(url: str, told: str) -> None:
    with pytest.raises(LocationError, match="give") as info:
        parse_location(url)
    assert told in str(info.value)


def test_a_password_is_never_repeated_in_the_error() -> None:
    with pytest.raises(LocationError) as info:
        parse_location("rsync://u:hunter2@h/x")
    assert "hunter2" not in str(info.value)


def test_a_jobs_path_is_taken_inside_the_base_directory() -> None:
    assert resolve(FAR, "/in/1.dat") == Place(location=FAR, path="/data/far/in/1.dat")
    assert resolve(FAR, "//in/./sub//1.dat").path == "/data/far/in/sub/1.dat"
    rsync = parse_location("rsync://me@host:2222/base")
    assert resolve(rsync, "/out/") == Place(location=rsync, path="/base/out")


@pytest.mark.parametrize(
    ("path", "told"),
    [
        ("in/1.dat", "not absolute"),
        ("/../etc/passwd", "'..'"),
        ("/in/../../etc/passwd", "'..'"),
        ("/in/..", "'..'"),
        ("/", "base directory itself"),
        ("/.", "base directory itself"),
        ("/in/a\0b", "NUL"),
        ("/in/a\nb", "control character"),
        ("/" + "x" * 5000, "at most 4096"),
    ],
)
def test_a_path_that_could_leave_the_base_directory_is_refused(path: str, told: str) -> None:
    with pytest.raises(LocationError, match="give") as info:
        resolve(FAR, path)
    assert told in str(info.value)


def test_an_item_is_a_location_and_a_path() -> None:
    assert split_item("far:/in/1.dat") == ("far", "/in/1.dat")
    assert split_item("far:/a:b") == ("far", "/a:b")
    for item in ("far", "/in/1.dat", ":/x", "f r:/x"):
        with pytest.raises(LocationError, match="LOCATION:PATH"):
            split_item(item)
