"""The standing adversary suite: attacks on rolectl's promise that must stay closed.

Each module attacks one trust boundary (a low-privileged database role, a crafted file, a
paused process, ...). Every attack ends in a refusal or a correct answer within a stated time
and memory bound, changes nothing, and was shown to fail on the code before its fix. The
shared fixtures in ``tests/conftest.py`` apply here too; under ``CI=true`` a skip is a failure.
"""
