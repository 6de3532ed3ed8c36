from main import greet


def test_greet():
    assert greet("Ada") == "Hello, Ada!"


def test_greet_other_names():
    assert greet("Grace Hopper") == "Hello, Grace Hopper!"
