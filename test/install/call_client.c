/*
 * call_client — an out-of-tree ingress client, built against an installed
 * statemesh with nothing but pkg-config (test/integration/test_install.py):
 *
 *     cc -std=c11 -Wall -Wextra -Werror call_client.c -o call_client \
 *        $(pkg-config --cflags --libs statemesh)
 *     call_client HOST:PORT TYPE ID N      Call TYPE/ID with int64 N
 *
 * Prints the string reply and exits 0, or prints the gRPC status and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include <statemesh/client.h>

int main(int argc, char **argv)
{
    sm_value_buf reply = SM_VALUE_BUF_INIT;
    uint8_t buf[SM_SCALAR_SIZE];
    sm_client *c = NULL;
    sm_value msg;
    sm_error err;
    const char *s;
    size_t len;
    int rc = 1;

    if (argc != 5) {
        fprintf(stderr, "usage: call_client HOST:PORT TYPE ID N\n");
        return 2;
    }
    if (!(c = sm_client_create(argv[1]))) return 1;
    msg = sm_value_int64(strtoll(argv[4], NULL, 10), buf);
    if (sm_client_call(c, argv[2], argv[3], &msg, 10000, &reply, &err) != SM_OK) {
        fprintf(stderr, "call_client: %s: %s\n", sm_status_code_name(err.code), err.message);
    } else if (sm_value_as_string(&reply.value, &s, &len) != SM_OK) {
        fprintf(stderr, "call_client: reply of type %s\n", reply.value.typename);
    } else {
        printf("%.*s\n", (int)len, s);
        rc = 0;
    }
    sm_value_buf_cleanup(&reply);
    sm_client_destroy(&c);
    return rc;
}
