// StateWriter / StateReader: byte layout, records, and rejection of bad input.
#include "rove/devices/device_state.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace rove {
namespace {

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const StateError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DeviceStateTest, ValuesAreLittleEndianAndRoundTrip) {
  StateWriter w;
  w.U8(0x12);
  w.U16(0x3456);
  w.U32(0x789ABCDE);
  w.U64(0x0102030405060708ull);
  w.I64(-2);
  w.Bool(true);
  w.Bool(false);
  const uint8_t raw[3] = {9, 8, 7};
  w.Bytes(raw, sizeof(raw));
  w.Blob(std::vector<uint8_t>{5, 6});
  const std::vector<uint8_t> expected_head = {0x12, 0x56, 0x34, 0xDE, 0xBC, 0x9A, 0x78, 0x08,
                                              0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
  ASSERT_GE(w.data().size(), expected_head.size());
  EXPECT_EQ(std::vector<uint8_t>(w.data().begin(), w.data().begin() + 15), expected_head);

  StateReader r(w.data());
  EXPECT_EQ(r.U8("a"), 0x12);
  EXPECT_EQ(r.U16("b"), 0x3456);
  EXPECT_EQ(r.U32("c"), 0x789ABCDEu);
  EXPECT_EQ(r.U64("d"), 0x0102030405060708ull);
  EXPECT_EQ(r.I64("e"), -2);
  EXPECT_TRUE(r.Bool("f"));
  EXPECT_FALSE(r.Bool("g"));
  uint8_t back[3] = {};
  r.Bytes(back, sizeof(back), "h");
  EXPECT_EQ(back[0], 9);
  EXPECT_EQ(back[2], 7);
  EXPECT_EQ(r.Blob(2, "i"), (std::vector<uint8_t>{5, 6}));
  EXPECT_TRUE(r.AtEnd());
  EXPECT_NO_THROW(r.ExpectEnd());
}

TEST(DeviceStateTest, TruncationNamesWhatWasRead) {
  const std::vector<uint8_t> three = {1, 2, 3};
  StateReader r(three);
  const std::string message = ErrorOf([&] { r.U32("counter 2 reload"); });
  EXPECT_NE(message.find("counter 2 reload"), std::string::npos) << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  // A failed read consumes nothing.
  EXPECT_EQ(r.U16("x"), 0x0201);
}

TEST(DeviceStateTest, InvalidValuesAreRejected) {
  const std::vector<uint8_t> two = {2, 9};
  StateReader r(two);
  EXPECT_NE(ErrorOf([&] { r.Bool("flag"); }).find("flag"), std::string::npos);
  StateReader r2(two);
  EXPECT_EQ(r2.U8Max(2, "ok"), 2);
  EXPECT_NE(ErrorOf([&] { r2.U8Max(8, "mode"); }).find("mode"), std::string::npos);
  // A blob longer than allowed, and one longer than the input.
  StateWriter w;
  w.Blob(std::vector<uint8_t>(20, 1));
  StateReader r3(w.data());
  EXPECT_NE(ErrorOf([&] { r3.Blob(16, "fifo"); }).find("fifo"), std::string::npos);
  std::vector<uint8_t> short_blob = w.data();
  short_blob.resize(10);
  StateReader r4(short_blob);
  EXPECT_NE(ErrorOf([&] { r4.Blob(64, "fifo"); }).find("truncated"), std::string::npos);
}

std::vector<uint8_t> TwoRecords() {
  StateWriter w;
  size_t a = w.BeginRecord(StateTag("AAAA"), 1);
  w.U32(7);
  size_t inner = w.BeginRecord(StateTag("IN  "), 2);
  w.U8(1);
  w.EndRecord(inner);
  w.EndRecord(a);
  size_t b = w.BeginRecord(StateTag("BBBB"), 3);
  w.U16(0xBEEF);
  w.EndRecord(b);
  return w.Take();
}

TEST(DeviceStateTest, RecordsNestAndCheckTagVersionLength) {
  const std::vector<uint8_t> data = TwoRecords();
  // Header layout: tag, version, length.
  EXPECT_EQ(data[0], 'A');
  EXPECT_EQ(data[4], 1);
  EXPECT_EQ(data[8], 4 + 12 + 1);
  StateReader r(data);
  StateReader a = r.ReadRecord(StateTag("AAAA"), 1);
  EXPECT_EQ(a.U32("x"), 7u);
  StateReader inner = a.ReadRecord(StateTag("IN  "), 2);
  EXPECT_EQ(inner.U8("y"), 1);
  inner.ExpectEnd();
  a.ExpectEnd();
  EXPECT_EQ(r.PeekTag(), StateTag("BBBB"));
  StateReader b = r.ReadRecord(StateTag("BBBB"), 3);
  EXPECT_EQ(b.U16("z"), 0xBEEF);
  // Reading past a record's end fails even though the outer input has more bytes... here it
  // has none; check the record's own limit with the first record instead.
  StateReader r2(data);
  StateReader a2 = r2.ReadRecord(StateTag("AAAA"), 1);
  a2.U32("x");
  a2.ReadRecord(StateTag("IN  "), 2);
  EXPECT_NE(ErrorOf([&] { a2.U8("beyond"); }).find("'AAAA'"), std::string::npos);

  StateReader wrong_tag(data);
  EXPECT_NE(ErrorOf([&] { wrong_tag.ReadRecord(StateTag("PIT "), 1); }).find("found 'AAAA'"),
            std::string::npos);
  StateReader wrong_version(data);
  EXPECT_NE(ErrorOf([&] { wrong_version.ReadRecord(StateTag("AAAA"), 2); }).find("version 1"),
            std::string::npos);

  // A length claiming more than is there.
  std::vector<uint8_t> long_length = data;
  long_length[9] = 0x10;
  StateReader bad_length(long_length);
  EXPECT_NE(ErrorOf([&] { bad_length.ReadRecord(StateTag("AAAA"), 1); }).find("claims"),
            std::string::npos);

  // Unread bytes in a record.
  StateReader r3(data);
  StateReader a3 = r3.ReadRecord(StateTag("AAAA"), 1);
  a3.U32("x");
  EXPECT_NE(ErrorOf([&] { a3.ExpectEnd(); }).find("unexpected bytes"), std::string::npos);
}

TEST(DeviceStateTest, EveryTruncationOfRecordsFails) {
  const std::vector<uint8_t> data = TwoRecords();
  for (size_t n = 0; n < data.size(); ++n) {
    std::vector<uint8_t> cut(data.begin(), data.begin() + n);
    StateReader r(cut);
    EXPECT_THROW(
        {
          StateReader a = r.ReadRecord(StateTag("AAAA"), 1);
          a.U32("x");
          StateReader inner = a.ReadRecord(StateTag("IN  "), 2);
          inner.U8("y");
          inner.ExpectEnd();
          a.ExpectEnd();
          StateReader b = r.ReadRecord(StateTag("BBBB"), 3);
          b.U16("z");
          b.ExpectEnd();
          r.ExpectEnd();
        },
        StateError)
        << "length " << n;
  }
}

TEST(DeviceStateTest, TagNames) {
  EXPECT_EQ(StateTagName(StateTag("PIT ")), "PIT ");
  EXPECT_EQ(StateTagName(0x00414243u), "CBA?");
}

}  // namespace
}  // namespace rove
