// Interop test: an ordinary Java application uses FerroHSM through the JDK's own
// SunPKCS11 provider, with nothing FerroHSM-specific on the Java side. Every signature the
// token makes is verified by the JDK's software providers (SunEC, SunRsaSign) and every
// AES-GCM ciphertext is checked against SunJCE, so agreement means real interop, not a
// module that agrees with itself.
//
//   java -cp CLASSES FerroHsmJava SUNPKCS11_CONFIG USER_PIN
//
// Expects a token prepared by tests/interop/java.sh: EC P-256 key pair + certificate
// "javaec" (CKA_ID 01), RSA-2048 key pair + certificate "javarsa" (CKA_ID 02), AES-256
// secret key "javaaes" (CKA_ID 03). Prints one `PASS: ...` or `FAIL: ...` line per check
// (a failure names the exception chain, which for the module's errors includes the CKR_*
// name SunPKCS11 puts in its PKCS11Exception) and exits 1 if any check failed.
//
// Plain javac, JDK 17, no dependencies.

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Security;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.Mac;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public final class FerroHsmJava {

    /** One check: returns an optional detail for the PASS line, throws to fail. */
    interface Check {
        String run() throws Exception;
    }

    private static int passed;
    private static int failed;

    private static void check(String name, Check c) {
        String detail;
        try {
            detail = c.run();
        } catch (Throwable t) {
            failed++;
            System.out.println("FAIL: " + name + ": " + describe(t));
            // The stack trace goes to stderr (run-all counts only stdout-style lines
            // starting with PASS:/FAIL:, and this keeps them one line each).
            t.printStackTrace(System.err);
            return;
        }
        passed++;
        System.out.println("PASS: " + name + (detail == null ? "" : " (" + detail + ")"));
    }

    /** The whole cause chain, e.g. "ProviderException: ... <- PKCS11Exception: CKR_...". */
    private static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            sb.append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
            if (c.getCause() == c) {
                break;
            }
        }
        return sb.toString();
    }

    private static void require(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    private static String hex(byte[] b, int max) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < Math.min(b.length, max); i++) {
            sb.append(String.format("%02x", b[i]));
        }
        return sb.toString() + (b.length > max ? "..." : "");
    }

    private static byte[] tampered(byte[] data, int at) {
        byte[] t = data.clone();
        t[at] ^= (byte) 0xff;
        return t;
    }

    // The JDK's own software providers: the independent side of every comparison.
    private static Provider sun(String name) {
        Provider p = Security.getProvider(name);
        if (p == null) {
            throw new IllegalStateException("JDK provider " + name + " is missing");
        }
        return p;
    }

    private static Provider p11;
    private static KeyStore ks;
    private static final byte[] DATA = new byte[5000];

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: FerroHsmJava SUNPKCS11_CONFIG USER_PIN");
            System.exit(2);
        }
        String config = args[0];
        char[] pin = args[1].toCharArray();
        new Random(20240601L).nextBytes(DATA); // fixed, so a failure reproduces

        check("SunPKCS11 loads the module from the config (C_Initialize, slot/token info, mechanism list)", () -> {
            Provider base = Security.getProvider("SunPKCS11");
            require(base != null, "the JDK has no SunPKCS11 provider");
            p11 = base.configure(config);
            Security.addProvider(p11);
            List<String> algs = new ArrayList<>();
            for (Provider.Service s : p11.getServices()) {
                algs.add(s.getType() + "." + s.getAlgorithm());
            }
            Collections.sort(algs);
            System.out.println("INFO: provider " + p11.getName() + " offers " + algs.size() + " services: " + algs);
            return p11.getName();
        });
        if (p11 == null) {
            finish();
            return;
        }

        check("KeyStore PKCS11 load with the user PIN (C_Login as CKU_USER)", () -> {
            ks = KeyStore.getInstance("PKCS11", p11);
            ks.load(null, pin);
            return ks.size() + " entries";
        });
        if (ks == null) {
            finish();
            return;
        }

        check("KeyStore aliases: javaec and javarsa (private key + certificate), javaaes (secret key)", () -> {
            TreeSet<String> aliases = new TreeSet<>(Collections.list(ks.aliases()));
            for (String a : aliases) {
                String kind = ks.isKeyEntry(a) ? (ks.entryInstanceOf(a, KeyStore.PrivateKeyEntry.class)
                        ? "private key entry" : "secret key entry") : "certificate entry";
                System.out.println("INFO: alias '" + a + "': " + kind);
            }
            require(ks.entryInstanceOf("javaec", KeyStore.PrivateKeyEntry.class), "no private key entry javaec");
            require(ks.entryInstanceOf("javarsa", KeyStore.PrivateKeyEntry.class), "no private key entry javarsa");
            require(ks.entryInstanceOf("javaaes", KeyStore.SecretKeyEntry.class), "no secret key entry javaaes");
            return "aliases " + aliases;
        });

        // ------------------------------------------------ token keys made by pkcs11-tool
        tokenSignature("javaec", "SHA256withECDSA", null, "SunEC");
        tokenSignature("javaec", "SHA384withECDSA", null, "SunEC");
        tokenSignature("javaec", "SHA256withECDSAinP1363Format", null, "SunEC");
        tokenSignature("javarsa", "SHA256withRSA", null, "SunRsaSign");
        tokenSignature("javarsa", "SHA512withRSA", null, "SunRsaSign");
        tokenSignature("javarsa", "RSASSA-PSS",
                new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1), "SunRsaSign");

        // ------------------------------------------------ key pairs generated from Java
        javaKeyPair("EC", new ECGenParameterSpec("secp256r1"), 0, "SHA256withECDSA", "SunEC");
        javaKeyPair("EC", new ECGenParameterSpec("secp384r1"), 0, "SHA384withECDSA", "SunEC");
        javaKeyPair("RSA", null, 2048, "SHA256withRSA", "SunRsaSign");

        // ------------------------------------------------ AES
        aesChecks();

        // ------------------------------------------------ HMAC, digests, random
        check("Mac HmacSHA256 (CKM_SHA256_HMAC, key imported with C_CreateObject) equals SunJCE's", () -> {
            byte[] raw = new byte[32];
            new SecureRandom().nextBytes(raw);
            Mac mine = Mac.getInstance("HmacSHA256", p11);
            mine.init(new SecretKeySpec(raw, "HmacSHA256"));
            byte[] a = mine.doFinal(DATA);
            Mac ref = Mac.getInstance("HmacSHA256", sun("SunJCE"));
            ref.init(new SecretKeySpec(raw, "HmacSHA256"));
            byte[] b = ref.doFinal(DATA);
            require(Arrays.equals(a, b), "HMAC " + hex(a, 8) + " != SunJCE " + hex(b, 8));
            return hex(a, 8);
        });

        for (String alg : new String[] {"SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512"}) {
            check("MessageDigest " + alg + " equals the SUN provider's (single and multi-part)", () -> {
                byte[] ref = MessageDigest.getInstance(alg, sun("SUN")).digest(DATA);
                byte[] one = MessageDigest.getInstance(alg, p11).digest(DATA);
                MessageDigest md = MessageDigest.getInstance(alg, p11);
                md.update(DATA, 0, 1);
                md.update(DATA, 1, 2000);
                md.update(DATA[2001]);
                md.update(DATA, 2002, DATA.length - 2002);
                byte[] multi = md.digest();
                require(Arrays.equals(one, ref), "single-part " + hex(one, 8) + " != " + hex(ref, 8));
                require(Arrays.equals(multi, ref), "multi-part " + hex(multi, 8) + " != " + hex(ref, 8));
                return hex(ref, 8);
            });
        }

        check("MessageDigest SHA-256 clone() mid-operation: works, or CloneNotSupportedException and the original still right", () -> {
            MessageDigest md = MessageDigest.getInstance("SHA-256", p11);
            md.update(DATA, 0, 3000); // well past SunPKCS11's buffer: C_DigestUpdate was called
            MessageDigest copy;
            String how;
            try {
                copy = (MessageDigest) md.clone();
                how = "clone worked";
            } catch (CloneNotSupportedException e) {
                copy = null;
                how = "clone not supported: " + describe(e) + "; Java copes (documented outcome)";
            }
            md.update(DATA, 3000, DATA.length - 3000);
            byte[] ref = MessageDigest.getInstance("SHA-256", sun("SUN")).digest(DATA);
            require(Arrays.equals(md.digest(), ref), "the original digest is wrong after clone()");
            if (copy != null) {
                copy.update(DATA, 3000, DATA.length - 3000);
                require(Arrays.equals(copy.digest(), ref), "the cloned digest is wrong");
            }
            return how;
        });

        check("SecureRandom PKCS11 (C_GenerateRandom): two draws differ; setSeed is tolerated", () -> {
            SecureRandom r = SecureRandom.getInstance("PKCS11", p11);
            byte[] a = new byte[64];
            byte[] b = new byte[64];
            r.nextBytes(a);
            r.nextBytes(b);
            require(!Arrays.equals(a, b), "two 64-byte draws are equal");
            require(!Arrays.equals(a, new byte[64]), "a draw is all zeros");
            r.setSeed(new byte[] {1, 2, 3}); // C_SeedRandom: CKR_RANDOM_SEED_NOT_SUPPORTED, ignored by Java
            r.nextBytes(a);
            return "provider " + r.getProvider().getName();
        });

        finish();
    }

    private static void finish() {
        System.out.println("java: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    /**
     * Sign DATA with the token's private key ALIAS through SunPKCS11; the JDK provider
     * VERIFIER accepts it with the certificate's public key and rejects it over tampered
     * data; SunPKCS11's own verify (C_Verify with the public key imported from the
     * certificate) accepts it too.
     */
    private static void tokenSignature(String alias, String alg, PSSParameterSpec pss, String verifier) {
        check("token key " + alias + " (pkcs11-tool): " + alg + " signed by SunPKCS11, verified by " + verifier
                + ", tampered data rejected", () -> {
            PrivateKey priv = (PrivateKey) ks.getKey(alias, null);
            require(priv != null, "no private key " + alias);
            Certificate cert = ks.getCertificate(alias);
            require(cert != null, "no certificate " + alias);
            PublicKey pub = cert.getPublicKey();

            Signature s = Signature.getInstance(alg, p11);
            if (pss != null) {
                s.setParameter(pss);
            }
            s.initSign(priv);
            s.update(DATA, 0, 1234);
            s.update(DATA, 1234, DATA.length - 1234);
            byte[] sig = s.sign();

            Signature v = Signature.getInstance(alg, sun(verifier));
            if (pss != null) {
                v.setParameter(pss);
            }
            v.initVerify(pub);
            v.update(DATA);
            require(v.verify(sig), verifier + " rejects the token's signature");
            v.initVerify(pub);
            v.update(tampered(DATA, 100));
            require(!v.verify(sig), verifier + " accepts the signature over tampered data");
            return sig.length + "-byte signature, key " + priv.getClass().getSimpleName();
        });
        check("token key " + alias + ": " + alg + " verified by SunPKCS11 (C_Verify with the certificate's key)", () -> {
            PrivateKey priv = (PrivateKey) ks.getKey(alias, null);
            PublicKey pub = ks.getCertificate(alias).getPublicKey();
            // The JDK cannot sign with a token key, so sign on the token and verify there.
            Signature t = Signature.getInstance(alg, p11);
            if (pss != null) {
                t.setParameter(pss);
            }
            t.initSign(priv);
            t.update(DATA);
            byte[] sig = t.sign();
            Signature v = Signature.getInstance(alg, p11);
            if (pss != null) {
                v.setParameter(pss);
            }
            v.initVerify(pub);
            v.update(DATA);
            require(v.verify(sig), "SunPKCS11 rejects the token's own signature");
            v.initVerify(pub);
            v.update(tampered(DATA, 4999));
            require(!v.verify(sig), "SunPKCS11 accepts the signature over tampered data");
            return null;
        });
    }

    /**
     * KeyPairGenerator on the token from Java (C_GenerateKeyPair, session objects), sign
     * through SunPKCS11, verify with the JDK provider VERIFIER using a public key rebuilt
     * from its X.509 encoding (so nothing of SunPKCS11's key object is reused).
     */
    private static void javaKeyPair(String type, ECGenParameterSpec ec, int bits, String alg, String verifier) {
        String what = type + " " + (ec != null ? ec.getName() : bits + "");
        check("KeyPairGenerator " + what + " from Java, " + alg + " signed by SunPKCS11, verified by " + verifier, () -> {
            KeyPairGenerator g = KeyPairGenerator.getInstance(type, p11);
            if (ec != null) {
                g.initialize(ec);
            } else {
                g.initialize(bits);
            }
            KeyPair kp = g.generateKeyPair();
            byte[] spki = kp.getPublic().getEncoded();
            require(spki != null, "the public key has no encoding");
            PublicKey pub = KeyFactory.getInstance(type, sun(verifier)).generatePublic(new X509EncodedKeySpec(spki));

            Signature s = Signature.getInstance(alg, p11);
            s.initSign(kp.getPrivate());
            s.update(DATA);
            byte[] sig = s.sign();

            Signature v = Signature.getInstance(alg, sun(verifier));
            v.initVerify(pub);
            v.update(DATA);
            require(v.verify(sig), verifier + " rejects the signature");
            v.initVerify(pub);
            v.update(tampered(DATA, 7));
            require(!v.verify(sig), verifier + " accepts the signature over tampered data");

            // And the other way: the JDK cannot sign with the token key, but SunPKCS11
            // verifies with the token's public key.
            Signature tv = Signature.getInstance(alg, p11);
            tv.initVerify(kp.getPublic());
            tv.update(DATA);
            require(tv.verify(sig), "SunPKCS11 rejects its own signature");
            return "SPKI " + spki.length + " bytes, signature " + sig.length + " bytes";
        });
    }

    private static byte[] gcm(Provider prov, int mode, Key key, byte[] iv, byte[] aad, byte[] in)
            throws GeneralSecurityException {
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding", prov);
        c.init(mode, key, new GCMParameterSpec(128, iv));
        c.updateAAD(aad);
        return c.doFinal(in);
    }

    private static void aesChecks() {
        byte[] aad = "FerroHSM java interop".getBytes(StandardCharsets.UTF_8);

        check("KeyGenerator AES 256 session key; AES/GCM/NoPadding encrypt + decrypt by SunPKCS11; SunJCE decrypts if extractable", () -> {
            KeyGenerator kg = KeyGenerator.getInstance("AES", p11);
            kg.init(256);
            SecretKey k = kg.generateKey();
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            byte[] ct = gcm(p11, Cipher.ENCRYPT_MODE, k, iv, aad, DATA);
            require(ct.length == DATA.length + 16, "ciphertext is " + ct.length + " bytes, expected data + 16-byte tag");
            byte[] pt = gcm(p11, Cipher.DECRYPT_MODE, k, iv, aad, ct);
            require(Arrays.equals(pt, DATA), "SunPKCS11 decrypts to something else");
            byte[] raw = k.getEncoded();
            if (raw == null) {
                return "key is sensitive/unextractable (getEncoded() null): decrypted with the PKCS#11 cipher only";
            }
            require(raw.length == 32, "the key is " + raw.length + " bytes");
            byte[] pt2 = gcm(sun("SunJCE"), Cipher.DECRYPT_MODE, new SecretKeySpec(raw, "AES"), iv, aad, ct);
            require(Arrays.equals(pt2, DATA), "SunJCE decrypts to something else");
            return "key extractable; SunJCE decrypts the token's ciphertext";
        });

        check("AES-256 raw key (C_CreateObject): SunPKCS11 GCM ciphertext decrypted by SunJCE and vice versa; bad tag rejected", () -> {
            byte[] raw = new byte[32];
            new SecureRandom().nextBytes(raw);
            SecretKeySpec k = new SecretKeySpec(raw, "AES");
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            byte[] ct = gcm(p11, Cipher.ENCRYPT_MODE, k, iv, aad, DATA);
            byte[] ref = gcm(sun("SunJCE"), Cipher.ENCRYPT_MODE, k, iv, aad, DATA);
            require(Arrays.equals(ct, ref), "SunPKCS11 ciphertext differs from SunJCE's for the same key/IV/AAD");
            require(Arrays.equals(gcm(sun("SunJCE"), Cipher.DECRYPT_MODE, k, iv, aad, ct), DATA), "SunJCE decrypt");
            require(Arrays.equals(gcm(p11, Cipher.DECRYPT_MODE, k, iv, aad, ref), DATA), "SunPKCS11 decrypt");
            try {
                gcm(p11, Cipher.DECRYPT_MODE, k, iv, aad, tampered(ref, 10));
                throw new AssertionError("SunPKCS11 decrypted a tampered ciphertext");
            } catch (AEADBadTagException expected) {
                return "tampered ciphertext: AEADBadTagException";
            } catch (GeneralSecurityException | RuntimeException e) {
                // Rejected, but not with the exception a Java application expects.
                throw new AssertionError("tampered ciphertext rejected with " + describe(e)
                        + " instead of AEADBadTagException", e);
            }
        });

        check("AES/GCM/NoPadding multi-part (update + doFinal) by SunPKCS11 equals SunJCE", () -> {
            byte[] raw = new byte[32];
            new SecureRandom().nextBytes(raw);
            SecretKeySpec k = new SecretKeySpec(raw, "AES");
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            Cipher c = Cipher.getInstance("AES/GCM/NoPadding", p11);
            c.init(Cipher.ENCRYPT_MODE, k, new GCMParameterSpec(128, iv));
            c.updateAAD(aad);
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            for (int off = 0; off < DATA.length; off += 1000) {
                byte[] part = c.update(DATA, off, Math.min(1000, DATA.length - off));
                if (part != null) {
                    out.write(part);
                }
            }
            out.write(c.doFinal());
            byte[] ref = gcm(sun("SunJCE"), Cipher.ENCRYPT_MODE, k, iv, aad, DATA);
            require(Arrays.equals(out.toByteArray(), ref), "multi-part ciphertext differs from SunJCE's");
            return null;
        });

        check("AES/CBC/PKCS5Padding (CKM_AES_CBC_PAD) by SunPKCS11 equals SunJCE both ways", () -> {
            byte[] raw = new byte[32];
            new SecureRandom().nextBytes(raw);
            SecretKeySpec k = new SecretKeySpec(raw, "AES");
            byte[] iv = new byte[16];
            new SecureRandom().nextBytes(iv);
            Cipher c = Cipher.getInstance("AES/CBC/PKCS5Padding", p11);
            c.init(Cipher.ENCRYPT_MODE, k, new IvParameterSpec(iv));
            byte[] ct = c.doFinal(DATA);
            Cipher r = Cipher.getInstance("AES/CBC/PKCS5Padding", sun("SunJCE"));
            r.init(Cipher.ENCRYPT_MODE, k, new IvParameterSpec(iv));
            require(Arrays.equals(ct, r.doFinal(DATA)), "ciphertext differs from SunJCE's");
            c.init(Cipher.DECRYPT_MODE, k, new IvParameterSpec(iv));
            require(Arrays.equals(c.doFinal(ct), DATA), "SunPKCS11 decrypt");
            return null;
        });

        check("token AES key javaaes (pkcs11-tool) from the KeyStore: GCM encrypt + decrypt by SunPKCS11", () -> {
            Key k = ks.getKey("javaaes", null);
            require(k instanceof SecretKey, "javaaes is " + k);
            byte[] iv = new byte[12];
            new SecureRandom().nextBytes(iv);
            byte[] ct = gcm(p11, Cipher.ENCRYPT_MODE, k, iv, aad, DATA);
            require(Arrays.equals(gcm(p11, Cipher.DECRYPT_MODE, k, iv, aad, ct), DATA), "round trip");
            return k.getEncoded() == null
                    ? "key is sensitive/unextractable: decrypted with the PKCS#11 cipher only"
                    : "key extractable";
        });

        check("KeyStore setEntry of an AES key makes a token object (CKA_TOKEN), visible after reload, deleteEntry removes it", () -> {
            KeyGenerator kg = KeyGenerator.getInstance("AES", p11);
            kg.init(128);
            SecretKey k = kg.generateKey();
            ks.setEntry("javastored", new KeyStore.SecretKeyEntry(k), null);
            KeyStore again = KeyStore.getInstance("PKCS11", p11);
            again.load(null, null); // already logged in
            require(again.entryInstanceOf("javastored", KeyStore.SecretKeyEntry.class),
                    "javastored is not in the reloaded KeyStore");
            Key stored = again.getKey("javastored", null);
            byte[] iv = new byte[12];
            byte[] ct = gcm(p11, Cipher.ENCRYPT_MODE, k, iv, aad, DATA);
            require(Arrays.equals(gcm(p11, Cipher.DECRYPT_MODE, stored, iv, aad, ct), DATA),
                    "the stored key decrypts to something else");
            again.deleteEntry("javastored");
            KeyStore third = KeyStore.getInstance("PKCS11", p11);
            third.load(null, null);
            require(!third.containsAlias("javastored"), "javastored survives deleteEntry");
            return null;
        });
    }
}
