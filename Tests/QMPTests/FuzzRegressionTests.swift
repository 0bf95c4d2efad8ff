import Testing
@testable import QMP

@Suite("Inputs found by fuzzing")
struct FuzzRegressionTests {
    @Test("an object with repeated keys survives a round trip")
    func repeatedKeys() throws {
        let text = #"{"return":[{"a":false,"vlan":"none52","u":"n","vlan":"none","t":[]}],"id":"x"}"#
        let v = try JSONParser.parse(text)
        let s = v.serialized(.compact)
        let again = try JSONParser.parse(s)
        #expect(s == text)
        #expect(again == v)
        #expect(v == v)
        // Same members in another order are equal; a different multiset is not.
        let reordered = try JSONParser.parse(#"{"id":"x","return":[{"vlan":"none","u":"n","vlan":"none52","a":false,"t":[]}]}"#)
        #expect(reordered == v && reordered.hashValue == v.hashValue)
        let other = try JSONParser.parse(#"{"return":[{"a":false,"vlan":"none","u":"n","vlan":"none","t":[]}],"id":"x"}"#)
        #expect(other != v)
    }
}
