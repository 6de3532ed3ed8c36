# Loaded by pytest before the test modules (and so before the student's
# code): reads the grader's nonce, prints it only when every test passed.
import os

_NONCE = os.read(3, 64).decode().strip()
os.close(3)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and session.testscollected > 0:
        print(f"\nREPLBOX-PASS {_NONCE}")
