/*
 * fuzz_form: request_form_value (fcgi/request.c), the decoder of query strings
 * (GET /suggestions?story_id=, GET /stories?limit=&cursor=) and of the /login form.
 *
 * Input: "NAME\nFORM". NAME and the field names the handlers look up are each looked up
 * in FORM (an exact-size copy, no terminator), and every answer is compared with a
 * reference decoder written from the header's contract: the first pair whose raw key
 * is the name; '+' is a space, %XX a byte (any other '%' is kept); -1 for a value over
 * REQUEST_FIELD_MAX decoded bytes or one that decodes to a NUL.
 */
#include <string.h>

#include "fuzz.h"
#include "request.h"

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The reference: 1 with the decoded value in out (*out_len bytes), 0, or -1. */
static int reference(const char *form, size_t len, const char *name, char *out, size_t *out_len)
{
    size_t name_len = strlen(name), pos = 0;

    while (pos < len) {
        size_t end = pos, key_end, n = 0;
        while (end < len && form[end] != '&')
            end++;
        for (key_end = pos; key_end < end && form[key_end] != '='; key_end++)
            ;
        if (key_end - pos == name_len && memcmp(form + pos, name, name_len) == 0) {
            for (size_t i = key_end < end ? key_end + 1 : end; i < end; i++) {
                char c = form[i];
                if (c == '%' && i + 2 < end && hex(form[i + 1]) >= 0 && hex(form[i + 2]) >= 0) {
                    c = (char)(hex(form[i + 1]) * 16 + hex(form[i + 2]));
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (c == '\0' || n == REQUEST_FIELD_MAX)
                    return -1;
                out[n++] = c;
            }
            *out_len = n;
            return 1;
        }
        pos = end + 1;
    }
    return 0;
}

static void check_name(const char *form, size_t len, const char *name)
{
    char want[REQUEST_FIELD_MAX];
    size_t want_len = 0;
    char *value = NULL;
    int got = request_form_value(form != NULL ? form : "", len, name, &value);
    int expected = reference(form, len, name, want, &want_len);

    FUZZ_CHECK(got == expected);
    FUZZ_CHECK((got == 1) == (value != NULL));
    if (got == 1)
        FUZZ_CHECK(strlen(value) == want_len && memcmp(value, want, want_len) == 0);
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"username", "password", "story_id", "limit", "cursor"};
    const char *field[2];
    size_t len[2];
    char *buf = fuzz_fields(data, size, 2, field, len);

    if (buf == NULL)
        return 0;
    char *form = fuzz_copy(field[1], len[1]);
    check_name(form, len[1], field[0]);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_name(form, len[1], names[i]);
    free(form);
    free(buf);
    return 0;
}
