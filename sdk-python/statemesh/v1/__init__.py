# Generated protocol modules (protocol/statemesh/v1/*.proto), written here by
# the top-level Makefile: `make` or `make sdk-python/statemesh/v1/function_pb2.py`.
