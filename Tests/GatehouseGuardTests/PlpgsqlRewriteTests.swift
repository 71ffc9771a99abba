import Testing
@testable import GatehouseGuard

@Suite("PL/pgSQL bodies the catalog-less parser refuses")
struct PlpgsqlRewriteTests {
    @Test("cursor statements become what they run, or nothing; every query and argument stays")
    func cursors() {
        let body = " DECLARE c CURSOR (k int) FOR SELECT * FROM t WHERE id = k; d refcursor; r record; "
            + "BEGIN OPEN c(f(1)); FETCH NEXT FROM c INTO r; MOVE -2 IN c; CLOSE c; "
            + "OPEN d NO SCROLL FOR EXECUTE 'SELECT ' || x USING y; "
            + "FOR r IN c(2) LOOP NULL; END LOOP; <<l>> FOR r IN c LOOP NULL; END LOOP; END "
        #expect(PlpgsqlRewrite.rewrite(body) == " DECLARE c CURSOR (k int) FOR SELECT * FROM t WHERE id = k; d refcursor; r record; "
            + "BEGIN PERFORM f(1); NULL; NULL; NULL;  "
            + "EXECUTE 'SELECT ' || x USING y; "
            + "FOR r IN SELECT 2 LOOP NULL; END LOOP; <<l>> FOR r IN SELECT 1 LOOP NULL; END LOOP; END ")
    }

    @Test("fields, RETURN NEXT and COLLATE in DECLARE")
    func others() {
        #expect(PlpgsqlRewrite.rewrite(" DECLARE s text COLLATE pg_catalog.\"C\" := 'a'; BEGIN r.x.y := s; RETURN NEXT; END ")
                == " DECLARE s text  := 'a'; BEGIN r := s; RETURN NEXT NULL; END ")
        // Nothing to rewrite; a word that only looks like a cursor statement is left alone.
        #expect(PlpgsqlRewrite.rewrite(" BEGIN UPDATE t SET close = 1 WHERE open; END ") == nil)
        #expect(PlpgsqlRewrite.rewrite(" DECLARE c int; BEGIN CLOSE c; END ") == nil)
    }

    @Test("what it cannot rewrite safely leaves the body refused")
    func failClosed() {
        #expect(PlpgsqlRewrite.rewrite(" DECLARE c CURSOR (k int) FOR SELECT k; BEGIN OPEN c(k := 1); END ") == nil)
        #expect(PlpgsqlRewrite.rewrite(" DECLARE c refcursor; BEGIN FETCH ABSOLUTE f(1) FROM c INTO r; END ") == nil)
        #expect(PlpgsqlRewrite.rewrite(" DECLARE c refcursor; BEGIN OPEN c WITH HOLD; END ") == nil)
    }

    @Test("the rewritten body replaces the original in its statement, whatever its quotes")
    func source() {
        let body = " DECLARE c refcursor; BEGIN CLOSE c; END "
        #expect(PlpgsqlRewrite.source("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $x$\(body)$x$", body: body)
                == "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $gh$ DECLARE c refcursor; BEGIN NULL; END $gh$")
        #expect(PlpgsqlRewrite.source("DO ' DECLARE c refcursor; BEGIN RAISE NOTICE ''x''; CLOSE c; END '",
                                      body: " DECLARE c refcursor; BEGIN RAISE NOTICE 'x'; CLOSE c; END ")
                == "DO $gh$ DECLARE c refcursor; BEGIN RAISE NOTICE 'x'; NULL; END $gh$")
        // A body not found as written (an E'' string) is not rewritten.
        #expect(PlpgsqlRewrite.source("DO E' DECLARE c refcursor; BEGIN CLOSE c; END '", body: body) == nil)
    }
}
