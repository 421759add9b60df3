/* digest.c — the per-partition log digest chain (OpenSSL SHA-256; SHA-NI makes it a few hundred ns per event). */
#include "digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

struct esr_hasher {
  EVP_MD_CTX *ctx;
  EVP_MD *md;
};

esr_code esr_hasher_new(esr_hasher **out, esr_error *err) {
  *out = NULL;
  esr_hasher *h = calloc(1, sizeof *h);
  if (!h) goto fail;
  h->ctx = EVP_MD_CTX_new();
  h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
  if (!h->ctx || !h->md) goto fail;
  *out = h;
  return ESR_E_OK;
fail:
  esr_hasher_free(h);
  return esr_error_set(err, ESR_E_NOMEM, 0, "cannot set up SHA-256 (libcrypto)");
}

void esr_hasher_free(esr_hasher *h) {
  if (!h) return;
  EVP_MD_CTX_free(h->ctx);
  EVP_MD_free(h->md);
  free(h);
}

static void be(uint8_t *out, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}

void esr_digest_chain(esr_hasher *h, uint8_t digest[32], int64_t offset, const void *key, size_t key_len,
                      const void *value, size_t value_len) {
  uint8_t hdr[12], vlen[4];
  be(hdr, (uint64_t)offset, 8);
  be(hdr + 8, key ? (uint32_t)key_len : 0xffffffffu, 4);
  be(vlen, (uint32_t)value_len, 4);
  unsigned int n = 32;
  EVP_DigestInit_ex(h->ctx, h->md, NULL);
  EVP_DigestUpdate(h->ctx, digest, 32);
  EVP_DigestUpdate(h->ctx, hdr, sizeof hdr);
  if (key && key_len) EVP_DigestUpdate(h->ctx, key, key_len);
  EVP_DigestUpdate(h->ctx, vlen, sizeof vlen);
  if (value_len) EVP_DigestUpdate(h->ctx, value, value_len);
  EVP_DigestFinal_ex(h->ctx, digest, &n);
}

void esr_digest_hex(const uint8_t digest[32], char out[65]) {
  for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
}
