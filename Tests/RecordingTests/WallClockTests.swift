import Testing
@testable import Recording

@Suite("WallClock.iso8601")
struct WallClockTests {
    @Test("formats UTC with 0 to 6 fraction digits, before and after 1970", arguments: [
        (Int64(0), 6, "1970-01-01T00:00:00.000000Z"),
        (Int64(1_763_632_803_412_807), 6, "2025-11-20T10:00:03.412807Z"),
        (Int64(1_763_632_803_412_807), 3, "2025-11-20T10:00:03.412Z"),
        (Int64(1_763_632_803_412_807), 0, "2025-11-20T10:00:03Z"),
        (Int64(-1), 6, "1969-12-31T23:59:59.999999Z"),
        (Int64(951_782_400_000_000), 1, "2000-02-29T00:00:00.0Z"),
        (Int64(253_402_300_799_999_999), 6, "9999-12-31T23:59:59.999999Z"),
    ])
    func formats(micros: Int64, digits: Int, expected: String) {
        #expect(WallClock.iso8601(micros: micros, fractionDigits: digits) == expected)
        if digits == 6 { #expect(WallClock.parseISO8601(expected) == micros) }
    }

    @Test("years outside 0...9999 still format (damaged input)")
    func farYears() {
        #expect(WallClock.iso8601(micros: 253_402_300_800_000_000, fractionDigits: 0) == "10000-01-01T00:00:00Z")
    }
}
