import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { webhookUrlProblem } from "../../src/webhooks/webhook-url";
import { admin, newConsumer } from "../support/api";

/** The host the management API is called on in these tests (test/support/api.ts). */
const OWN_HOST = "keygate.test";

describe("webhookUrlProblem", () => {
  it.each([
    "https://hooks.example.com/keygate",
    "https://hooks.example.com:8443/keygate?tenant=a#frag",
    "https://HOOKS.Example.com./keygate",
    "https://hooks.test/inbox",
    "https://0x7f.1.example/hooks",
    "https://bücher.example/hooks",
    "https://93.184.215.14/hooks",
    "https://[2606:4700:4700::1111]/hooks",
    "https://[2002:5db8:d70e::1]/hooks",
    "http://localhost/hooks",
    "http://localhost:8787/hooks",
    "http://LOCALHOST:9/hooks",
    "http://127.0.0.1:9/hooks",
    "http://127.8.9.10/hooks",
    "http://[::1]:3000/hooks",
  ])("accepts %s", (url) => {
    expect(webhookUrlProblem(url, OWN_HOST)).toBeNull();
  });

  // every hostile variant of issue 11, finding 5, with the words the refusal must use
  it.each([
    // scheme and form
    ["http://hooks.example.com/", "must use https:"],
    ["ftp://hooks.example.com/", "absolute https:// URL"],
    ["javascript:alert(1)", "absolute https:// URL"],
    ["https:hooks.example.com/", "absolute https:// URL"],
    ["https:/hooks.example.com/", "absolute https:// URL"],
    ["https:///hooks.example.com/", "absolute https:// URL"],
    ["//hooks.example.com/", "absolute https:// URL"],
    ["https://", "absolute https:// URL"],
    ["https://hooks..example.com:99999/", "absolute https:// URL"],
    // userinfo
    ["https://user:pass@hooks.example.com/", "user name or password"],
    ["https://user@hooks.example.com/", "user name or password"],
    ["https://@hooks.example.com/", "user name or password"],
    ["https://:@hooks.example.com/", "user name or password"],
    ["http://user:pass@127.0.0.1/", "user name or password"],
    // whitespace, control and invisible characters, backslashes, in the raw string
    ["https://hooks.example .com/", "whitespace"],
    ["https://hooks.example.com/a b", "whitespace"],
    [" https://hooks.example.com/", "whitespace"],
    ["https://hooks.example.com/\t", "whitespace"],
    ["https://hooks.exam\nple.com/", "whitespace"],
    ["https://hooks.example.com/\u0000", "control"],
    ["https://hooks.example.com/\u007f", "control"],
    ["https://hooks.example.com/\u00a0", "whitespace"],
    ["https://hooks\u200b.example.com/", "invisible"],
    ["https://local\u00adhost/", "invisible"],
    ["https://hooks.example.com\\@127.0.0.1/", "backslash"],
    // loopback, in every notation
    ["https://127.0.0.1/", "127.0.0.1: a loopback address"],
    ["https://127.255.255.254/", "a loopback address"],
    ["https://2130706433/", "127.0.0.1: a loopback address"],
    ["https://0x7f.1/", "127.0.0.1: a loopback address"],
    ["https://0x7f000001/", "127.0.0.1: a loopback address"],
    ["https://0x7f.0x0.0x0.0x1/", "127.0.0.1: a loopback address"],
    ["https://0177.0.0.1/", "127.0.0.1: a loopback address"],
    ["https://127.1/", "127.0.0.1: a loopback address"],
    ["https://127.0.0.1./", "127.0.0.1: a loopback address"],
    ["https://%31%32%37.0.0.1/", "127.0.0.1: a loopback address"],
    ["https://127。0。0。1/", "127.0.0.1: a loopback address"],
    ["https://[::1]/", "[::1]: a loopback address"],
    ["https://[0:0:0:0:0:0:0:1]/", "[::1]: a loopback address"],
    ["https://[::ffff:127.0.0.1]/", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback"],
    ["https://[::ffff:7f00:1]/", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback"],
    ["https://[::127.0.0.1]/", "IPv4-compatible IPv6 address of 127.0.0.1, a loopback"],
    ["https://[::ffff:0:7f00:1]/", "IPv4-translated IPv6 address of 127.0.0.1, a loopback"],
    ["https://[64:ff9b::7f00:1]/", "NAT64 IPv6 address of 127.0.0.1, a loopback"],
    ["https://[2002:7f00:1::1]/", "6to4 IPv6 address of 127.0.0.1, a loopback"],
    ["https://localhost/", "localhost: a loopback name"],
    ["https://localhost./", "localhost: a loopback name"],
    ["https://LOCALHOST/", "localhost: a loopback name"],
    ["https://ｌｏｃａｌｈｏｓｔ/", "localhost: a loopback name"],
    ["https://loc%61lhost/", "localhost: a loopback name"],
    ["https://hooks.localhost/", "a loopback name"],
    // http: to loopback only as written plainly
    ["http://2130706433/", "must use https:"],
    ["http://0x7f.1/", "must use https:"],
    ["http://0177.0.0.1/", "must use https:"],
    ["http://127.1/", "must use https:"],
    ["http://127.0.0.1./", "must use https:"],
    ["http://localhost./", "must use https:"],
    ["http://hooks.localhost/", "must use https:"],
    ["http://[::ffff:127.0.0.1]/", "must use https:"],
    ["http://[0:0:0:0:0:0:0:1]/", "must use https:"],
    ["http://10.0.0.1/", "must use https:"],
    // unspecified
    ["https://0.0.0.0/", "0.0.0.0: an unspecified address"],
    ["https://0/", "0.0.0.0: an unspecified address"],
    ["https://0.1.2.3/", "an unspecified address"],
    ["https://[::]/", "[::]: an unspecified address"],
    // private
    ["https://10.0.0.1/", "10.0.0.1: a private address"],
    ["https://167772161/", "10.0.0.1: a private address"],
    ["https://0xa.1/", "10.0.0.1: a private address"],
    ["https://012.0.0.1/", "10.0.0.1: a private address"],
    ["https://172.16.0.1/", "a private address"],
    ["https://172.31.255.255/", "a private address"],
    ["https://192.168.1.1/", "a private address"],
    ["https://0xc0a80101/", "192.168.1.1: a private address"],
    ["https://[::ffff:10.0.0.1]/", "IPv4-mapped IPv6 address of 10.0.0.1, a private"],
    ["https://[64:ff9b::a00:1]/", "NAT64 IPv6 address of 10.0.0.1, a private"],
    ["https://[64:ff9b::10.0.0.1]/", "NAT64 IPv6 address of 10.0.0.1, a private"],
    // link-local and metadata
    ["https://169.254.1.1/", "a link-local address"],
    ["https://169.254.169.254/", "169.254.169.254: the cloud metadata address"],
    ["https://2852039166/", "169.254.169.254: the cloud metadata address"],
    ["https://0xa9fea9fe/", "169.254.169.254: the cloud metadata address"],
    ["https://[::ffff:169.254.169.254]/", "of 169.254.169.254, the cloud metadata address"],
    ["https://[fd00:ec2::254]/", "[fd00:ec2::254]: the cloud metadata address"],
    ["https://[fe80::1]/", "a link-local address"],
    ["https://metadata.google.internal/", "metadata.google.internal: the cloud metadata service"],
    ["https://metadata.google.internal./", "the cloud metadata service"],
    ["https://METADATA/computeMetadata/v1/", "metadata: the cloud metadata service"],
    ["https://service.internal/", "a private-network name"],
    ["https://printer.local/", "a multicast-DNS name"],
    ["https://router.home.arpa/", "an infrastructure name"],
    ["https://intranet/", "a single-label name"],
    ["https://intranet./", "a single-label name"],
    // CGNAT, unique-local, multicast, reserved, documentation
    ["https://100.64.0.1/", "a carrier-grade NAT address"],
    ["https://100.100.100.200/", "a carrier-grade NAT address"],
    ["https://100.127.255.255/", "a carrier-grade NAT address"],
    ["https://[fc00::1]/", "a unique-local address"],
    ["https://[fd12:3456::1]/", "a unique-local address"],
    ["https://224.0.0.1/", "a multicast address"],
    ["https://239.255.255.250/", "a multicast address"],
    ["https://[ff02::1]/", "a multicast address"],
    ["https://240.0.0.1/", "a reserved address"],
    ["https://255.255.255.255/", "a reserved address"],
    ["https://192.0.0.170/", "a reserved address"],
    ["https://198.18.0.1/", "a benchmarking address"],
    ["https://192.0.2.1/", "a documentation address"],
    ["https://[2001:db8::1]/", "a documentation address"],
    ["https://[2001::1]/", "a reserved address"],
    ["https://[100::1]/", "a reserved address"],
    ["https://[fec0::1]/", "a site-local address"],
    ["https://[::ffff:8.8.8.8]/", "to be written as IPv4"],
  ])("refuses %j: %s", (url, reason) => {
    const problem = webhookUrlProblem(url, OWN_HOST);
    expect(problem).not.toBeNull();
    expect(problem).toContain(reason);
  });

  describe("Keygate's own host", () => {
    it.each([
      ["https://keygate.test/hooks", "keygate.test"],
      ["https://KEYGATE.Test/hooks", "keygate.test"],
      ["https://keygate.test./hooks", "keygate.test"],
      ["https://keygate.test/hooks", "keygate.test."],
      ["https://keygate.test:443/hooks", "keygate.test"],
      ["https://keygate.test:8443/hooks", "keygate.test"],
      ["http://localhost:8787/hooks", "localhost:8787"],
      ["http://127.0.0.1:8787/hooks", "127.0.0.1:8787"],
      // any spelling of loopback reaches a Keygate that listens on loopback
      ["http://127.0.0.2:8787/hooks", "127.0.0.1:8787"],
      ["http://[::1]:8787/hooks", "127.0.0.1:8787"],
      ["http://localhost:8787/hooks", "127.0.0.1:8787"],
      ["http://127.0.0.1:8787/hooks", "localhost:8787"],
      ["http://127.1.2.3:8787/hooks", "[::1]:8787"],
      ["http://127.0.0.1:8787/hooks", "localhost.:8787"],
      ["http://127.0.0.1:8787/hooks", "[::ffff:127.0.0.1]:8787"],
      ["http://127.0.0.1:8787/hooks", "0.0.0.0:8787"],
      ["http://127.0.0.1:8787/hooks", "kg.localhost:8787"],
    ])("refuses %s when Keygate is %s", (url, own) => {
      expect(webhookUrlProblem(url, own)).toBe("must not point at Keygate itself");
      // the rule alone, as at delivery, does not know the host
      expect(webhookUrlProblem(url, null)).toBeNull();
    });

    it.each([
      ["https://hooks.keygate.test/hooks", "keygate.test"],
      ["https://keygate.test.example/hooks", "keygate.test"],
      ["http://127.0.0.1:9/hooks", "127.0.0.1:8787"],
      ["http://localhost:9/hooks", "localhost:8787"],
    ])("accepts %s when Keygate is %s", (url, own) => {
      expect(webhookUrlProblem(url, own)).toBeNull();
    });
  });

  /** An IPv4 address written in one of the notations the URL parser reads. */
  const notations = (a: number, b: number, c: number, d: number) => {
    const n = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
    const oct = (x: number) => `0${x.toString(8)}`;
    const hex = (x: number) => `0x${x.toString(16)}`;
    return [
      `${a}.${b}.${c}.${d}`,
      String(n),
      hex(n),
      `0${n.toString(8)}`,
      [a, b, c, d].map(hex).join("."),
      [a, b, c, d].map(oct).join("."),
      `${a}.${(b << 16) | (c << 8) | d}`,
      `${a}.${b}.${(c << 8) | d}`,
      `${hex(a)}.${(b << 16) | (c << 8) | d}`,
      `${a}.${b}.${c}.${d}.`,
      `[::ffff:${a}.${b}.${c}.${d}]`,
      `[::ffff:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}]`,
      `[64:ff9b::${a}.${b}.${c}.${d}]`,
    ];
  };
  const octet = fc.integer({ min: 0, max: 255 });

  it("refuses any 127.x.y.z in any notation over https:, and over http: unless written plainly", () => {
    fc.assert(
      fc.property(octet, octet, octet, fc.nat(12), (b, c, d, which) => {
        const host = notations(127, b, c, d)[which]!;
        expect(webhookUrlProblem(`https://${host}/hooks`, null)).not.toBeNull();
        const plain = webhookUrlProblem(`http://${host}/hooks`, null);
        if (which === 0) expect(plain).toBeNull();
        else expect(plain).toContain("must use https:");
      }),
    );
  });

  it("refuses any address of 10/8, 172.16/12, 192.168/16, 169.254/16, 100.64/10 in any notation", () => {
    const ranges: [number, number, number][] = [
      [10, 0, 255],
      [172, 16, 31],
      [192, 168, 168],
      [169, 254, 254],
      [100, 64, 127],
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...ranges),
        fc.integer({ min: 0, max: 255 }),
        octet,
        octet,
        fc.nat(12),
        ([a, low, high], b, c, d, which) => {
          const second = low + (b % (high - low + 1));
          const host = notations(a, second, c, d)[which]!;
          for (const scheme of ["https", "http"]) {
            expect(webhookUrlProblem(`${scheme}://${host}/hooks`, null)).not.toBeNull();
          }
        },
      ),
    );
  });

  it("accepts any https: URL on an ordinary public name, whatever its path and query", () => {
    const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}[a-z0-9]$/);
    fc.assert(
      fc.property(label, label, fc.webPath(), (sub, domain, path) => {
        const url = `https://${sub}.${domain}.com${path}`;
        fc.pre(!/[\s\\]/.test(url) && !`${sub}.${domain}`.includes("xn--"));
        expect(webhookUrlProblem(url, OWN_HOST)).toBeNull();
      }),
    );
  });
});

describe("webhookUrl on the management API", () => {
  const refused = [
    ["http to a public host", "http://hooks.example.com/keygate", "must use https:"],
    ["a private address", "https://10.0.0.1/keygate", "a private address"],
    ["the metadata service", "https://169.254.169.254/latest", "cloud metadata"],
    ["a decimal loopback", "https://2130706433/", "a loopback address"],
    ["userinfo", "https://user:pass@hooks.example.com/", "user name or password"],
    ["a space", "https://hooks.example.com/a b", "whitespace"],
    ["Keygate's own host", "https://keygate.test/hooks", "Keygate itself"],
    ["Keygate's own host with a trailing dot", "https://KEYGATE.test./hooks", "Keygate itself"],
    ["Keygate's own host with its port", "https://keygate.test:443/hooks", "Keygate itself"],
  ] as const;

  it.each(refused)("POST /consumers refuses %s with 400 and says why", async (_l, url, why) => {
    const res = await admin.post("/consumers", { name: "Hooked", webhookUrl: url });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation_failed");
    expect(res.body.detail).toContain("webhookUrl");
    expect(res.body.detail).toContain(why);
    expect(res.body.errors).toEqual([
      { path: "webhookUrl", message: expect.stringContaining(why) },
    ]);
  });

  it.each(refused)(
    "PATCH /consumers/:id refuses %s with 400 and keeps the URL",
    async (_l, url, why) => {
      const id = await newConsumer("Hooked");
      const res = await admin.patch(`/consumers/${id}`, { webhookUrl: url });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation_failed");
      expect(res.body.detail).toContain(why);
      expect((await admin.get(`/consumers/${id}`)).body.webhookUrl).toBeNull();
    },
  );

  it("accepts https: and http: to loopback, for local development", async () => {
    const created = await admin.post("/consumers", {
      name: "Hooked",
      webhookUrl: "http://127.0.0.1:9/hooks",
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const patched = await admin.patch(`/consumers/${id}`, {
      webhookUrl: "https://hooks.example.com/keygate",
    });
    expect(patched.status).toBe(200);
    expect(patched.body.webhookUrl).toBe("https://hooks.example.com/keygate");
    const cleared = await admin.patch(`/consumers/${id}`, { webhookUrl: null });
    expect(cleared.status).toBe(200);
    expect(cleared.body.webhookUrl).toBeNull();
  });
});
