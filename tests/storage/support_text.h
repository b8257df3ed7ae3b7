/* tests/storage/support_text.h: realistic omnichannel support messages, seeded (header-only).
 *
 * Used by the compression test and the storage benchmark to measure zstd ratios on the kind of
 * text ticketq stores: a small command envelope (tenant, ticket, channel, customer, agent) and
 * a message body assembled from varied greetings, problem statements with order numbers,
 * products, dates and amounts, agent replies and sign-offs, in the flavour of
 * /work/shared/peer-body-in.txt and peer-body-out.txt.
 */
#ifndef TQ_SUPPORT_TEXT_H
#define TQ_SUPPORT_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static inline uint64_t st_text_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define ST_PICK(arr, s) (arr[st_text_rand(s) % (sizeof(arr) / sizeof(arr[0]))])

/* Appends tmpl to out at *n with {N} replaced by number and {P} by product. */
static inline void st_text_expand(char *out, size_t cap, size_t *n, const char *tmpl,
                                  unsigned number, const char *product) {
    for (const char *t = tmpl; *t != '\0' && *n + 40 < cap; t++) {
        if (t[0] == '{' && t[1] != '\0' && t[2] == '}') {
            if (t[1] == 'N') *n += (size_t)snprintf(out + *n, cap - *n, "%u", number);
            if (t[1] == 'P') *n += (size_t)snprintf(out + *n, cap - *n, "%s", product);
            t += 2;
        } else {
            out[(*n)++] = *t;
        }
    }
    out[*n] = '\0';
}

/* Writes one message record (envelope + body) into out (cap bytes, >= 4096); returns its
 * length. */
static inline uint32_t st_support_message(uint64_t *s, char *out, size_t cap) {
    static const char *const greet_in[] = {
        "Hi,",       "Hello,",        "Hey there,", "Good morning,", "Dear support team,",
        "Hi again,", "Hello support,"};
    static const char *const greet_out[] = {
        "Hello, thanks for reaching out!", "Hi, thank you for your patience.",
        "Hello, and sorry for the wait!", "Hi, thanks for getting in touch."};
    static const char *const products[] = {
        "winter jacket", "running shoes", "coffee grinder",   "wireless headphones",
        "standing desk", "yoga mat",      "phone case",       "backpack",
        "smart watch",   "desk lamp",     "espresso machine", "rain coat",
        "gift card"};
    static const char *const problems[] = {
        "the tracking page has said \"label created\" for {N} days now",
        "it arrived damaged: the box was crushed and the {P} is scratched",
        "I was charged twice ({N}.99 EUR each) for the same order",
        "I received the wrong size of the {P}",
        "the discount code SAVE{N} was not applied at checkout",
        "I still have not received the refund you promised {N} days ago",
        "the {P} stopped working after a week",
        "my account is locked after a password reset",
        "the invoice shows the wrong billing address",
        "I want to cancel my subscription before the next renewal on the {N}th"};
    static const char *const asks[] = {
        "Could you check with the carrier and tell me when it will ship?",
        "Can you send a replacement or refund me?",
        "Please fix this as soon as possible.",
        "Can I still change the size from M to L?",
        "What are my options here?",
        "I need it before the 20th, it is a gift.",
        "Please call me back, my number is in my profile."};
    static const char *const replies[] = {
        ("I checked with the carrier: your parcel was collected this morning and should arrive "
         "within {N} business days."),
        "I have issued a full refund of {N}.49 EUR; it will show on your statement in 3-5 days.",
        "A replacement {P} is on its way, and you can keep the damaged one.",
        "I have applied the discount manually and refunded the difference.",
        "Your account is unlocked; please set a new password using the link we just sent.",
        "The size can no longer be changed on this order, but free exchanges are open for {N} "
        "days.",
        "I have escalated this to our billing team, who will contact you within 24 hours."};
    static const char *const bye[] = {"Thanks!",
                                      "Thank you, Anna",
                                      "Best regards, Tom",
                                      "Anything else I can help with?",
                                      "Have a great day!",
                                      "Kind regards, the support team",
                                      "Cheers"};
    static const char *const channels[] = {"email", "chat", "whatsapp", "sms", "web", "voice"};
    size_t n = 0;
    uint64_t ticket = 100000 + st_text_rand(s) % 900000;
    bool inbound = st_text_rand(s) % 5 != 0;
    n += (size_t)snprintf(
        out + n, cap - n,
        "tenant=acme-%u;ticket=%llu;channel=%s;%s=ext-%llu;at=2024-12-%02uT%02u:%02u:%02uZ;",
        (unsigned)(st_text_rand(s) % 4), (unsigned long long)ticket, ST_PICK(channels, s),
        inbound ? "customer" : "agent", (unsigned long long)(st_text_rand(s) % 1000000),
        (unsigned)(1 + st_text_rand(s) % 28), (unsigned)(st_text_rand(s) % 24),
        (unsigned)(st_text_rand(s) % 60), (unsigned)(st_text_rand(s) % 60));
    n += (size_t)snprintf(out + n, cap - n, "body=");
    int sentences = 1 + (int)(st_text_rand(s) % 4);
    if (inbound) {
        n += (size_t)snprintf(out + n, cap - n, "%s I ordered a %s (order #SO-2024-%06llu) ",
                              ST_PICK(greet_in, s), ST_PICK(products, s),
                              (unsigned long long)(st_text_rand(s) % 1000000));
        for (int i = 0; i < sentences && n + 400 < cap; i++) {
            n += (size_t)snprintf(out + n, cap - n, "and ");
            st_text_expand(out, cap, &n, ST_PICK(problems, s), (unsigned)(2 + st_text_rand(s) % 12),
                           ST_PICK(products, s));
            n += (size_t)snprintf(out + n, cap - n, ". %s ", ST_PICK(asks, s));
        }
    } else {
        n += (size_t)snprintf(out + n, cap - n, "%s ", ST_PICK(greet_out, s));
        for (int i = 0; i < sentences && n + 400 < cap; i++) {
            st_text_expand(out, cap, &n, ST_PICK(replies, s), (unsigned)(2 + st_text_rand(s) % 60),
                           ST_PICK(products, s));
            n += (size_t)snprintf(out + n, cap - n, " ");
        }
    }
    n += (size_t)snprintf(out + n, cap - n, "%s", ST_PICK(bye, s));
    return (uint32_t)n;
}

#endif
